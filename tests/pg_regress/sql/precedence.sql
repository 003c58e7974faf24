-- Which URL gets an event: the most specific that is set, from the message's own webhook down
-- to the account's delivery-status webhook.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme');
SELECT url FROM callback.create_delivery_webhook(1, 'https://account.example/dlr');
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'customers', 'https://list.example/dlr');
INSERT INTO callback.members (list_id, destination) VALUES (1, '+15550001');
INSERT INTO callback.campaigns (list_id, name, callback_url, event_urls)
VALUES (1, 'spring', 'https://campaign.example/dlr', '{"message.final": "https://campaign.example/final"}');

CREATE TEMP VIEW recorded AS
SELECT id, message_id, event, target, url FROM callback.callbacks ORDER BY id;

-- 1. The message's own webhook takes its delivery reports ...
INSERT INTO callback.messages (campaign_id, channel, destination, notify_url)
VALUES (1, 'sms', '+15550001', 'https://own.example/report');
UPDATE callback.messages SET status = 'delivered' WHERE id = 1;
-- 2. ... while the campaign's URL for message.final takes that event.
SELECT * FROM recorded;
DELETE FROM callback.callbacks;

-- 3. Without its own webhook, the campaign's callback URL.
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550001', 'failed');
SELECT * FROM recorded;
DELETE FROM callback.callbacks;

-- Only the events in callback_events go to the callback URL (message.status by default).
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550001', 'sent');
SELECT count(*) AS sent_events_recorded FROM callback.callbacks;
UPDATE callback.campaigns SET callback_events = '{message.status,message.sent}' WHERE id = 1;
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550001', 'sent');
SELECT * FROM recorded;
DELETE FROM callback.callbacks;

-- 4. A campaign with no URL of its own: the list's. A message outside campaigns sent to a
--    member: the member's list's.
UPDATE callback.campaigns SET callback_url = NULL, event_urls = '{}' WHERE id = 1;
UPDATE callback.lists SET callback_url = 'https://list2.example/dlr' WHERE id = 1;
SELECT callback_url, overridden FROM callback.campaigns WHERE id = 1;
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550001', 'delivered');
INSERT INTO callback.messages (account_id, member_id, channel, destination, status) VALUES (1, 1, 'sms', '+15550001', 'read');
SELECT * FROM recorded;
DELETE FROM callback.callbacks;

-- 5. No campaign and no list: the account's delivery-status webhook, for message.status only.
INSERT INTO callback.messages (account_id, channel, destination, status) VALUES (1, 'viber', '+15550002', 'delivered');
SELECT * FROM recorded;
DELETE FROM callback.callbacks;

-- Nothing at any level: nothing is recorded.
SELECT callback.revoke_delivery_webhook(1);
INSERT INTO callback.messages (account_id, channel, destination, status) VALUES (1, 'email', 'a@example.com', 'delivered');
SELECT count(*) AS recorded FROM callback.callbacks;

-- The URL, method and body are fixed when the event is recorded: changing the campaign later
-- does not change a callback already recorded.
UPDATE callback.campaigns SET callback_url = 'https://before.example/dlr' WHERE id = 1;
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550001', 'delivered');
UPDATE callback.campaigns SET callback_url = 'https://after.example/dlr', callback_method = 'GET' WHERE id = 1;
UPDATE callback.messages SET status = 'read' WHERE id = (SELECT max(id) FROM callback.messages);
SELECT id, url, method, body IS NOT NULL AS has_body FROM callback.callbacks ORDER BY id;
