-- Replaying callbacks, the history views and the campaign report (seed 003), as SQL sees them
-- (the worker's side is in tests/integration).
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'callers', 'https://crm.example.com/dlr');
INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'renewals');
INSERT INTO callback.members (list_id, destination) VALUES (1, '+919876543210');
INSERT INTO callback.messages (campaign_id, member_id, channel, destination, callback_data)
VALUES (1, 1, 'voice', '+919876543210', 'ref, "quoted"' || E'\n' || 'second line'),
       (1, NULL, 'voice', '+919876543211', NULL);
INSERT INTO callback.attempts (message_id, status) VALUES (1, 'busy'), (1, 'completed'), (2, 'no-answer');
UPDATE callback.messages SET status = 'completed' WHERE id = 1;
UPDATE callback.messages SET status = 'failed', error_code = 'NO_ANSWER', error_message = 'no answer, twice' WHERE id = 2;

SELECT message_id, member_id, destination, channel, status, final, attempts, attempt_ids, error_code, error_message
FROM callback.campaign_report(1);
SELECT regexp_replace(callback.campaign_report_csv(1), '\d{4}-\d\d-\d\dT[0-9:.]+Z', '<time>', 'g') AS csv;
SELECT callback.campaign_report(99);
\echo :LAST_ERROR_SQLSTATE

-- Replay: only failed or delivered callbacks; it resets attempts and makes the callback due.
SELECT callback.replay(1);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.replay(999);
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.callbacks SET state = 'failed', attempts = 21, finished_at = now(), last_error = 'HTTP 500' WHERE id = 1
RETURNING webhook_id AS failed_webhook_id \gset
SELECT id, state, attempts, finished_at, due_at <= now() AS due, webhook_id = :'failed_webhook_id' AS same_webhook_id
FROM callback.replay(1);

-- The history, from delivery rows as a worker writes them.
INSERT INTO callback.deliveries (callback_id, account_id, attempt, started_at, duration, http_status, response_excerpt, error)
VALUES (1, 1, 1, '2026-01-15 10:00:00+00', '120 ms', 500, 'oops', 'HTTP 500 is not a success'),
       (1, 1, 2, '2026-01-15 10:05:00+00', '80 ms', 200, 'ok', NULL);
SELECT callback_id, message_id, campaign_id, event, attempt, started_at AT TIME ZONE 'UTC' AS started_utc, duration, http_status, error
FROM callback.message_history(1);
SELECT count(*) AS campaign_attempts FROM callback.campaign_history(1);
SELECT count(*) AS other_message_attempts FROM callback.message_history(2);

-- Retention: purge() deletes delivered callbacks finished before the cut-off, with their
-- history; recent ones stay, and failed ones are kept for replay however old.
UPDATE callback.callbacks SET state = 'delivered', finished_at = now() - interval '10 days' WHERE id = 1;
UPDATE callback.callbacks SET state = 'delivered', finished_at = now() - interval '1 hour' WHERE id = 2;
SELECT callback.purge('7 days');
SELECT id, state FROM callback.callbacks ORDER BY id;
SELECT count(*) AS history_of_purged FROM callback.deliveries WHERE callback_id = 1;
UPDATE callback.callbacks SET state = 'failed', finished_at = now() - interval '10 days' WHERE id = 2;
SELECT callback.purge('7 days') AS failed_kept;
UPDATE callback.callbacks SET state = 'delivered' WHERE id = 2;
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+1', 'delivered');
UPDATE callback.callbacks SET state = 'delivered', finished_at = now() - interval '10 days' WHERE message_id = 3;
SELECT callback.purge('0 seconds', 1) AS at_most_one;
SELECT id FROM callback.callbacks ORDER BY id;
SELECT callback.purge('-1 day');
\echo :LAST_ERROR_SQLSTATE
