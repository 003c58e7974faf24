-- URL templates (seed 001): ${name} filled from member attributes, campaign env variables and
-- the built-ins, values percent-encoded; a variable with no value refuses the change.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url)
VALUES (1, 'students', 'https://apps.example.edu/mailhistory/notification123/${studentId}');
INSERT INTO callback.campaigns (list_id, name, env) VALUES (1, 'enrolment', '{"term": "2026 fall", "office": "registrar"}');
INSERT INTO callback.members (list_id, destination, attributes) VALUES
    (1, '+15550001', '{"studentId": "s-1001", "name": "Zoë O''Brien/Smith"}'),
    (1, '+15550002', '{"name": "No Id"}');

-- Member attributes, as in the seed.
INSERT INTO callback.messages (campaign_id, member_id, batch_id, channel, destination, status)
VALUES (1, 1, 'b-7', 'sms', '+15550001', 'delivered');
SELECT url FROM callback.callbacks;

-- Every built-in, campaign env variables, and values that would reshape the URL if not encoded.
UPDATE callback.campaigns SET callback_url =
    'https://crm.example.com/cb/${messageId}?id=${id}&member=${memberId}&campaign=${campaignId}&comm=${communicationId}'
    '&list=${listId}&account=${accountId}&batch=${batchId}&status=${status}&event=${event}&channel=${channel}'
    '&to=${destination}&term=${term}&office=${office}&name=${name}';
UPDATE callback.messages SET status = 'read' WHERE id = 1;
SELECT url FROM callback.callbacks WHERE id = 2;

-- A built-in wins over a member attribute or env variable of the same name.
UPDATE callback.members SET attributes = attributes || '{"status": "spoofed", "id": "spoofed"}' WHERE id = 1;
UPDATE callback.campaigns SET callback_url = 'https://crm.example.com/cb?id=${id}&status=${status}&student=${studentId}';
UPDATE callback.messages SET status = 'failed' WHERE id = 1;
SELECT url FROM callback.callbacks WHERE id = 3;

-- Attempt events add ${attemptId} and ${attemptNo}; campaign events have the campaign's variables.
UPDATE callback.campaigns SET
    event_urls = '{"message.attempt": "https://crm.example.com/attempt/${attemptNo}/${attemptId}?m=${id}",
                   "campaign.complete": "https://crm.example.com/done/${campaignId}?status=${status}&term=${term}"}';
INSERT INTO callback.attempts (message_id, status) VALUES (1, 'busy');
UPDATE callback.campaigns SET status = 'completed';
SELECT event, url FROM callback.callbacks WHERE id > 3 ORDER BY id;

-- A member without the attribute: the status change is refused, nothing is written.
UPDATE callback.campaigns SET status = 'running', callback_url = 'https://apps.example.edu/n/${studentId}';
INSERT INTO callback.messages (campaign_id, member_id, channel, destination) VALUES (1, 2, 'sms', '+15550002');
SELECT count(*) AS callbacks_before FROM callback.callbacks;
UPDATE callback.messages SET status = 'delivered' WHERE member_id = 2;
\echo :LAST_ERROR_SQLSTATE
SELECT status FROM callback.messages WHERE member_id = 2;
SELECT count(*) AS callbacks_after FROM callback.callbacks;

-- A message with no member has no ${memberId}.
UPDATE callback.campaigns SET callback_url = 'https://crm.example.com/m/${memberId}';
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550003', 'delivered');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS messages FROM callback.messages;

-- Template syntax is checked when the setting is written.
UPDATE callback.campaigns SET callback_url = 'https://crm.example.com/m/${memberId';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET callback_url = 'https://crm.example.com/m/${}';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET callback_url = 'https://${tenant}.example.com/m';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET env = '{"bad name": 1}';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET env = '{"nested": {"a": 1}}';
\echo :LAST_ERROR_SQLSTATE
SELECT callback_url, env FROM callback.campaigns;
