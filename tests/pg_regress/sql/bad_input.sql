-- Bad input is refused with a clear message and SQLSTATE, and nothing is half-written: a
-- fingerprint of every table of the schema is the same after all the refused statements.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'customers', 'https://crm.example.com/dlr');
INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'spring');
INSERT INTO callback.accounts (name) VALUES ('globex');
INSERT INTO callback.members (list_id, attributes) VALUES (1, '{"customerId": "c-1"}');
INSERT INTO callback.messages (campaign_id, channel, destination) VALUES (1, 'sms', '+15550001');
INSERT INTO callback.retry_policies (name, kind, max_attempts, intervals)
VALUES ('backoff', 'intervals', 3, '{30 seconds, 10 minutes}');
SELECT name, kind, max_attempts, intervals FROM callback.retry_policies WHERE name = 'backoff';

-- Every row of every table of the schema, hashed.
CREATE FUNCTION pg_temp.fingerprint() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t regclass;
    rows text;
    all_rows text := '';
BEGIN
    FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'callback'::regnamespace AND c.relkind = 'r' ORDER BY c.relname LOOP
        EXECUTE format('SELECT string_agg(x::text, '','' ORDER BY x::text) FROM %s x', t) INTO rows;
        all_rows := all_rows || t::text || ':' || coalesce(rows, '') || ';';
    END LOOP;
    RETURN md5(all_rows);
END $$;
SELECT pg_temp.fingerprint() AS before \gset

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
-- A URL whose host is missing or hidden, as a lenient parser would read it, in every URL
-- column and argument: refused before anything is written.
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'f', 'http:///x');
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET callback_url = 'https:///127.0.0.1:8443/dlr';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET event_urls = '{"message.final": "http://:80/"}';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET alert_url = 'https://crm.example.com@evil.example/alerts';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.messages (campaign_id, channel, destination, notify_url) VALUES (1, 'sms', '+1', 'https://crm.example.com\@evil.example/');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.create_delivery_webhook(1, 'https:///crm.example.com/status');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.subscriptions (account_id, name, callback_url) VALUES (1, 'bi', 'https://${tenant}.example.com/hook');
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
-- A status messages are in can be neither deleted nor renamed, as with a foreign key.
DELETE FROM callback.statuses WHERE status = 'queued';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.statuses SET status = 'enqueued' WHERE status = 'queued';
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
INSERT INTO callback.retry_policies (name, kind, max_attempts, step, jitter) VALUES ('jittery', 'fixed', 3, '1 minute', 2);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.retry_policies (name, kind, max_attempts, step, success_codes) VALUES ('redirects', 'fixed', 3, '1 minute', '3xx');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.retry_policies (name, kind, max_attempts, step, cap) VALUES ('capped', 'exponential', 3, '1 hour', '1 minute');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- Campaigns, members, messages and attempts that point nowhere or across accounts.
INSERT INTO callback.campaigns (list_id, name) VALUES (999, 'orphan');
\echo :LAST_ERROR_SQLSTATE
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

-- URLs: outside ASCII, too long, a variable in the host, HTTPS required, too long once filled.
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'i', 'https://crm.example.com/bücher');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'j', 'https://crm.example.com/' || repeat('a', 3000));
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'k', 'https://${tenant}.example.com/dlr');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.create_delivery_webhook(1, 'http://crm.example.com/status');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.create_delivery_webhook(1, NULL);
\echo :LAST_ERROR_SQLSTATE
BEGIN;
UPDATE callback.members SET attributes = jsonb_build_object('customerId', repeat('ü', 400));
UPDATE callback.lists SET callback_url = 'https://crm.example.com/dlr/${customerId}';
UPDATE callback.messages SET member_id = 1, status = 'delivered';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Template variables: unknown, and values that try to reshape the URL (percent-encoded, so
-- they stay one path segment: shown by the callback recorded in the transaction below).
BEGIN;
UPDATE callback.lists SET callback_url = 'https://crm.example.com/dlr/${orderId}';
UPDATE callback.messages SET status = 'delivered';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
UPDATE callback.members SET attributes = '{"customerId": "../admin?x=1#y@evil.example"}';
UPDATE callback.lists SET callback_url = 'https://crm.example.com/dlr/${customerId}';
UPDATE callback.messages SET member_id = 1, status = 'delivered';
SELECT url FROM callback.callbacks;
ROLLBACK;

-- Headers: a NUL, too long, too many, not a string, not an object.
UPDATE callback.lists SET callback_headers = '{"X-Tenant": "\u0000"}';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET callback_headers = jsonb_build_object('X-Tenant', repeat('v', 5000));
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET callback_headers = (SELECT jsonb_object_agg('X-H' || g, 'v') FROM generate_series(1, 40) g);
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET callback_headers = '{"X-Tenant": 5}';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET callback_headers = '"X-Tenant: acme"';
\echo :LAST_ERROR_SQLSTATE

-- Environment variables and member attributes: not an object, nested, too large, bad JSON.
UPDATE callback.campaigns SET env = '["term"]';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET env = '{"term": {"year": 2026}}';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
UPDATE callback.campaigns SET env = jsonb_build_object('term', repeat('t', 20000));
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.members SET attributes = jsonb_build_object('note', repeat('n', 20000));
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
INSERT INTO callback.members (list_id, attributes) VALUES (1, '{"name": "\ud800"}');
\echo :LAST_ERROR_SQLSTATE

-- Very long values (what a body carries is bounded: see the README's limits).
\set VERBOSITY terse
INSERT INTO callback.accounts (name) VALUES (repeat('a', 201));
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.lists (account_id, name) VALUES (1, repeat('l', 100000));
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.messages SET destination = repeat('d', 321);
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.messages SET batch_id = repeat('b', 256);
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.messages SET error_code = repeat('e', 65);
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.messages SET status = 'failed', error_message = repeat('e', 1000000);
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.messages SET callback_data = repeat('c', 4001);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- NULLs.
\set VERBOSITY terse
INSERT INTO callback.lists (account_id, name) VALUES (1, NULL);
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.messages SET channel = NULL;
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.messages SET status = NULL;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT callback.replay(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.disable_campaign_callbacks(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.purge(NULL);
\echo :LAST_ERROR_SQLSTATE

-- Functions given what does not exist or makes no sense.
SELECT callback.replay(999);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.enable_campaign_callbacks(999);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.purge('-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.reset_campaign_settings(1, '{callback_color}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.subscriptions (account_id, events, callback_url) VALUES (1, '{message.opened}', 'https://crm.example.com/s');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.subscriptions (account_id, channels, callback_url) VALUES (1, '{fax}', 'https://crm.example.com/s');
\echo :LAST_ERROR_SQLSTATE

-- Bytes callback._packed_body did not make are not a stored body: XX001, data_corrupted.
SELECT callback._body('\x7b7d');
\echo :LAST_ERROR_SQLSTATE
SELECT callback._body(substr(callback._packed_body('{"type": "message.status"}'), 1, 8));
\echo :LAST_ERROR_SQLSTATE

-- Nothing of the above was written.
SELECT pg_temp.fingerprint() = :'before' AS nothing_written;

-- A status or retry policy nothing uses may be renamed and deleted.
INSERT INTO callback.statuses (status, final, description) VALUES ('teleported', true, 'Sent by other means.');
UPDATE callback.statuses SET status = 'beamed' WHERE status = 'teleported' RETURNING status;
DELETE FROM callback.statuses WHERE status = 'beamed' RETURNING status;
UPDATE callback.retry_policies SET name = 'backoff2' WHERE name = 'backoff' RETURNING name;
