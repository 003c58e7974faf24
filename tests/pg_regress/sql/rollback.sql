-- Callbacks are recorded in the same transaction as the change: a rolled-back change records
-- nothing, a committed one records its callbacks, and a disabled campaign's are held.
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
INSERT INTO callback.messages (campaign_id, channel, destination) VALUES (1, 'sms', '+15550001');

BEGIN;
UPDATE callback.messages SET status = 'delivered';
SELECT count(*) AS recorded_inside FROM callback.callbacks;
ROLLBACK;
SELECT status, (SELECT count(*) FROM callback.callbacks) AS recorded_after_rollback FROM callback.messages;

-- A savepoint rolled back takes its callbacks with it; the rest of the transaction keeps its own.
BEGIN;
UPDATE callback.messages SET status = 'delivered';
SAVEPOINT s;
UPDATE callback.messages SET status = 'read';
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT status FROM callback.messages;
SELECT event, body::jsonb -> 'data' ->> 'status' AS status FROM callback.callbacks ORDER BY id;

-- A statement that fails half-way records nothing for the rows it had already changed.
INSERT INTO callback.messages (campaign_id, channel, destination) VALUES (1, 'sms', '+15550002'), (1, 'sms', '+15550003');
UPDATE callback.messages SET status = CASE WHEN id = 3 THEN 'no-such-status' ELSE 'delivered' END WHERE id IN (2, 3);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS recorded FROM callback.callbacks;

-- Disabling a campaign's callbacks holds its pending ones and the new ones, dropping none;
-- enabling releases them all, due at once.
SELECT callback.disable_campaign_callbacks(1);
UPDATE callback.messages SET status = 'delivered' WHERE id = 2;
SELECT message_id, state FROM callback.callbacks ORDER BY id;
SELECT callback.enable_campaign_callbacks(1);
SELECT message_id, state, due_at <= now() AS due FROM callback.callbacks ORDER BY id;
-- Held callbacks of one message to one URL are released in order: the first due, the next waiting.
SELECT callback.disable_campaign_callbacks(1);
UPDATE callback.messages SET status = 'read' WHERE id = 2;
UPDATE callback.messages SET status = 'failed' WHERE id = 2;
SELECT callback.enable_campaign_callbacks(1);
SELECT id, message_id, state FROM callback.callbacks WHERE message_id = 2 ORDER BY id;
SELECT callback.enable_campaign_callbacks(99);
\echo :LAST_ERROR_SQLSTATE
