-- Subscriptions: any number per account, each filtered by event type and channel; every
-- matching one gets its own copy besides the primary target.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme'), ('globex');
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'customers', 'https://list.example/dlr');
INSERT INTO callback.campaigns (list_id, name, event_urls) VALUES (1, 'spring', '{"campaign.complete": "https://list.example/done"}');

INSERT INTO callback.subscriptions (account_id, name, callback_url, events, channels) VALUES
    (1, 'everything', 'https://all.example/events', '{}', '{}'),
    (1, 'sms reports', 'https://sms.example/dlr', '{message.status}', '{sms}'),
    (1, 'finals, any channel', 'https://final.example/hook', '{message.final}', '{}'),
    (1, 'whatsapp and viber', 'https://chat.example/hook', '{}', '{whatsapp,viber}'),
    (2, 'another account', 'https://globex.example/hook', '{}', '{}');
INSERT INTO callback.subscriptions (account_id, name, callback_url, enabled) VALUES (1, 'paused', 'https://paused.example/x', false);

CREATE TEMP VIEW recorded AS
SELECT c.event, c.target, s.name AS subscription, c.url
FROM callback.callbacks c LEFT JOIN callback.subscriptions s ON s.id = c.subscription_id
ORDER BY c.id;

-- An SMS delivered: the campaign's URL, then every matching subscription.
INSERT INTO callback.messages (campaign_id, channel, destination) VALUES (1, 'sms', '+15550001');
UPDATE callback.messages SET status = 'delivered' WHERE id = 1;
SELECT * FROM recorded;
DELETE FROM callback.callbacks;

-- A WhatsApp message read: the SMS subscription does not match, the chat one does.
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'whatsapp', '+15550002', 'read');
SELECT * FROM recorded;
DELETE FROM callback.callbacks;

-- An intermediate status the message did not ask for goes nowhere, subscriptions included.
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550003', 'accepted');
SELECT count(*) AS recorded FROM callback.callbacks;

-- A campaign event has no channel: channel-filtered subscriptions do not get it.
UPDATE callback.campaigns SET status = 'completed' WHERE id = 1;
SELECT * FROM recorded;
DELETE FROM callback.callbacks;

-- A subscription needs no other URL to be set, and carries its own settings.
UPDATE callback.subscriptions SET callback_format = 'form', callback_bearer_token = 'tok-123' WHERE name = 'everything';
INSERT INTO callback.messages (account_id, channel, destination, status) VALUES (1, 'email', 'a@example.com', 'delivered');
SELECT event, target, url, callback._headers_sent(headers, body IS NOT NULL) AS headers, auth_header,
       callback._body(body) LIKE 'data%5B%' AS form_body
FROM callback.requests ORDER BY id;

-- Bad subscriptions are refused.
INSERT INTO callback.subscriptions (account_id, callback_url, events) VALUES (1, 'https://x.example/', '{message.bounced}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.subscriptions (account_id, callback_url, channels) VALUES (1, 'https://x.example/', '{telegram}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.subscriptions (account_id, callback_url) VALUES (1, 'mailto:ops@example.com');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
INSERT INTO callback.subscriptions (account_id, callback_url) VALUES (1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS subscriptions FROM callback.subscriptions;
