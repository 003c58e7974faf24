-- The per-message switches of seed 002: notify on/off, intermediate reports on/off; and the
-- message's own webhook with its content type and callback data echoed back.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url, callback_events)
VALUES (1, 'customers', 'https://crm.example.com/dlr', '{message.status,message.sent,message.final,message.attempt,campaign.complete}');
INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'spring');
INSERT INTO callback.subscriptions (account_id, callback_url) VALUES (1, 'https://all.example/events');

-- Final statuses only, by default: accepted is not reported, sent fires message.sent only,
-- delivered is reported (with message.final).
INSERT INTO callback.messages (campaign_id, channel, destination, callback_data)
VALUES (1, 'sms', '+15550001', 'order=981;customer=17');
UPDATE callback.messages SET status = 'accepted' WHERE id = 1;
UPDATE callback.messages SET status = 'sent' WHERE id = 1;
UPDATE callback.messages SET status = 'delivered' WHERE id = 1;
SELECT event, target, body::jsonb -> 'data' ->> 'status' AS status,
       body::jsonb -> 'data' ->> 'callback_data' AS callback_data
FROM callback.callbacks ORDER BY id;
DELETE FROM callback.callbacks;

-- Intermediate reports on: every status is reported.
INSERT INTO callback.messages (campaign_id, channel, destination, intermediate_reports)
VALUES (1, 'sms', '+15550002', true);
UPDATE callback.messages SET status = 'accepted' WHERE id = 2;
UPDATE callback.messages SET status = 'delivered' WHERE id = 2;
SELECT event, target, body::jsonb -> 'data' ->> 'status' AS status,
       body::jsonb -> 'data' ->> 'previous_status' AS previous
FROM callback.callbacks WHERE event = 'message.status' AND target = 'campaign' ORDER BY id;
DELETE FROM callback.callbacks;

-- notify = false: nothing at all, subscriptions and attempts included.
INSERT INTO callback.messages (campaign_id, channel, destination, notify, intermediate_reports)
VALUES (1, 'voice', '+15550003', false, true);
UPDATE callback.messages SET status = 'ringing' WHERE id = 3;
INSERT INTO callback.attempts (message_id, status) VALUES (3, 'no-answer');
UPDATE callback.messages SET status = 'no-answer' WHERE id = 3;
SELECT count(*) AS recorded FROM callback.callbacks;

-- Switching notify back on reports the following changes.
UPDATE callback.messages SET notify = true, status = 'completed' WHERE id = 3;
SELECT event, target FROM callback.callbacks ORDER BY id;
DELETE FROM callback.callbacks;

-- The message's own webhook, in XML, with callback data echoed back (escaped).
INSERT INTO callback.messages (campaign_id, channel, destination, notify_url, notify_content_type, callback_data)
VALUES (1, 'sms', '+15550004', 'https://own.example/reports', 'xml', '<ref a="1">&</ref>');
UPDATE callback.messages SET status = 'delivered' WHERE id = 4;
SELECT target, url, headers,
       body LIKE '<?xml version="1.0" encoding="UTF-8"?><callback><data>%' AS xml_body,
       substring(body FROM '<callback_data>.*</callback_data>') AS echoed
FROM callback.callbacks WHERE target = 'message';

-- Callback data is bounded (terse: the failing row holds timestamps).
\set VERBOSITY terse
INSERT INTO callback.messages (campaign_id, channel, destination, callback_data) VALUES (1, 'sms', '+1', repeat('x', 4001));
\echo :LAST_ERROR_SQLSTATE
