-- Bad input is refused with a clear message and SQLSTATE, and nothing is half-written.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'customers', 'https://crm.example.com/dlr');
INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'spring');

CREATE TEMP VIEW written AS
SELECT (SELECT count(*) FROM callback.lists) AS lists, (SELECT count(*) FROM callback.campaigns) AS campaigns,
       (SELECT count(*) FROM callback.messages) AS messages, (SELECT count(*) FROM callback.callbacks) AS callbacks,
       (SELECT count(*) FROM callback.subscriptions) AS subscriptions;
SELECT * FROM written;

-- URLs.
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'a', 'crm.example.com/dlr');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'b', 'gopher://crm.example.com/');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'c', 'https://user:pw@crm.example.com/');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'd', 'https://crm.example.com/a b');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name, alert_url) VALUES (1, 'e', 'https://crm.example.com/#alerts');
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET event_urls = '{"message.final": "not a url"}';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.messages (campaign_id, channel, destination, notify_url) VALUES (1, 'sms', '+1', 'ftp://x/');
\echo :LAST_ERROR_SQLSTATE

-- Method, format, events, channel, status.
INSERT INTO callback.lists (account_id, name, callback_method) VALUES (1, 'f', 'PUT');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name, callback_format) VALUES (1, 'g', 'yaml');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name, callback_events) VALUES (1, 'h', '{message.opened}');
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET event_urls = '{"message.opened": "https://crm.example.com/o"}';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET event_urls = '["https://crm.example.com/o"]';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.messages (campaign_id, channel, destination) VALUES (1, 'pigeon', '+1');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+1', 'teleported');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.messages (campaign_id, channel, destination, notify_content_type) VALUES (1, 'sms', '+1', 'csv');
\echo :LAST_ERROR_SQLSTATE

-- Credentials, headers, signing secret, retry policy, notification list.
UPDATE callback.lists SET callback_basic_auth = 'no-colon';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET callback_basic_auth = 'a:b', callback_bearer_token = 'tok';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET callback_headers = '{"X-Evil": "a\r\nSet-Cookie: x=1"}';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET callback_headers = '{"Authorization": "Basic eA=="}';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET callback_headers = '{"Bad Header": "x"}';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET signing_secret = 'hunter2';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET retry_policy = 'forever';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET notification_list = '{ops}';
\echo :LAST_ERROR_SQLSTATE
SELECT callback_basic_auth, callback_bearer_token, callback_headers, signing_secret, retry_policy, notification_list
FROM callback.lists;

-- Retry policies: each CHECK constraint is named for its rule (terse: the failing row holds timestamps).
\set VERBOSITY terse
INSERT INTO callback.retry_policies (name, kind, max_attempts, step) VALUES ('neg', 'fixed', 3, '-5 minutes');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.retry_policies (name, kind, max_attempts, step) VALUES ('many', 'fixed', 100000, '1 minute');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.retry_policies (name, kind, max_attempts) VALUES ('nostep', 'exponential', 5);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.retry_policies (name, kind, max_attempts, intervals) VALUES ('mismatch', 'intervals', 5, '{1 minute, 5 minutes}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.retry_policies (name, kind, max_attempts, step, timeout) VALUES ('slow', 'fixed', 3, '1 minute', '1 hour');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.retry_policies (name, kind, max_attempts, step) VALUES ('Bad Name', 'fixed', 3, '1 minute');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
INSERT INTO callback.retry_policies (name, kind, max_attempts, intervals)
VALUES ('backoff', 'intervals', 3, '{30 seconds, 10 minutes}');
SELECT name, kind, max_attempts, intervals FROM callback.retry_policies WHERE name = 'backoff';

-- Campaigns, members, messages and attempts that point nowhere or across accounts.
INSERT INTO callback.campaigns (list_id, name) VALUES (999, 'orphan');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.accounts (name) VALUES ('globex');
INSERT INTO callback.campaigns (list_id, account_id, name) VALUES (1, 2, 'stolen');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.members (list_id, attributes) VALUES (999, '{}');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
INSERT INTO callback.members (list_id, attributes) VALUES (1, '["not", "an", "object"]');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
INSERT INTO callback.messages (campaign_id, channel, destination) VALUES (999, 'sms', '+1');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.messages (channel, destination) VALUES ('sms', '+1');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.messages (campaign_id, account_id, channel, destination) VALUES (1, 2, 'sms', '+1');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
INSERT INTO callback.messages (campaign_id, channel, destination) VALUES (1, 'sms', '');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
INSERT INTO callback.attempts (message_id, status) VALUES (999, 'busy');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name) VALUES (999, 'nobody''s');
\echo :LAST_ERROR_SQLSTATE

-- Nothing of the above was written.
SELECT * FROM written;
