-- Operating it: the queue per endpoint, endpoint health, each campaign's deliveries; sending a
-- callback now; replaying many. Callbacks and history are written here as a worker would.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'customers', 'https://crm.example.com/dlr/${id}');
INSERT INTO callback.campaigns (list_id, name, callback_url) VALUES (1, 'spring', 'https://Hooks.Example.net:8443/spring'), (1, 'summer', NULL);
INSERT INTO callback.messages (campaign_id, channel, destination, status)
SELECT c, 'sms', '+1555000' || g, 'delivered' FROM generate_series(1, 2) c, generate_series(1, 3) g;
-- Two more events for message 1: they wait behind its first.
UPDATE callback.messages SET status = 'read' WHERE id = 1;
UPDATE callback.messages SET status = 'delivered' WHERE id = 1;
SELECT id, message_id, state, url FROM callback.callbacks ORDER BY id;

-- As a worker would: callback 1 retrying in an hour, 2 delivered at its second attempt, 3
-- failed for good, 5 in flight; then the summer campaign's callbacks held (4 and 6).
UPDATE callback.callbacks SET attempts = 1, due_at = now() + interval '1 hour' WHERE id = 1;
UPDATE callback.callbacks SET state = 'delivered', attempts = 2, finished_at = now() - interval '2 hours' WHERE id = 2;
UPDATE callback.callbacks SET state = 'failed', attempts = 3, finished_at = now() - interval '30 minutes' WHERE id = 3;
UPDATE callback.callbacks SET attempts = 1, leased_until = now() + interval '1 minute', leased_by = 42 WHERE id = 5;
SELECT callback.disable_campaign_callbacks(2);
INSERT INTO callback.deliveries (callback_id, account_id, attempt, started_at, duration, http_status, response_excerpt, error) VALUES
    (2, 1, 1, now() - interval '3 hours', '10 ms', 503, 'busy', 'HTTP 503 is not a success'),
    (2, 1, 2, now() - interval '2 hours', '12 ms', 200, 'ok', NULL),
    (3, 1, 1, now() - interval '50 minutes', '30 s', NULL, NULL, 'timeout: global'),
    (3, 1, 2, now() - interval '40 minutes', '9 ms', 500, 'oops', 'HTTP 500 is not a success'),
    (3, 1, 3, now() - interval '30 minutes', '9 ms', 500, 'oops', 'HTTP 500 is not a success'),
    (1, 1, 1, now() - interval '10 minutes', '1 ms', NULL, NULL, 'connection error: Connection refused');
SELECT id, state, attempts, leased_by FROM callback.callbacks ORDER BY id;

-- The queue per endpoint (lag is how long the longest-due callback has been due).
SELECT endpoint, depth, due, in_flight, retrying, waiting, held, lag < interval '1 minute' AS lag_under_a_minute
FROM callback.queue ORDER BY endpoint;

-- Endpoint health: the spring endpoint failed four times in a row since its last success.
SELECT endpoint, attempts, success_rate, attempts_last_hour, success_rate_last_hour, consecutive_failures,
       last_success_at IS NOT NULL AS succeeded, last_error
FROM callback.endpoint_health ORDER BY endpoint;

-- Each campaign's deliveries.
SELECT campaign_id, name, callbacks_enabled, callbacks, delivered, failed, to_send, held, attempts,
       last_delivered_at IS NOT NULL AS delivered_some, alerts
FROM callback.campaign_summary ORDER BY campaign_id;

-- Without the library preloaded there are no workers to show.
SELECT count(*) AS workers FROM callback.workers;

-- retry_now: a callback waiting for its next attempt is due now; others say why not.
SELECT callback.retry_now(1) = now() AS due_now;
SELECT due_at <= now() AS due FROM callback.callbacks WHERE id = 1;
SELECT callback.retry_now(7);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.retry_now(5);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.retry_now(4);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.retry_now(3);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.retry_now(99);
\echo :LAST_ERROR_SQLSTATE

-- replay_all: failed callbacks by campaign and time; in event order per target.
UPDATE callback.callbacks SET state = 'failed', attempts = 21, finished_at = now() - interval '1 day', leased_until = NULL
WHERE id IN (1, 5, 6, 7, 8);
SELECT callback.replay_all(campaign_id => 1, finished_to => now() - interval '2 hours') AS replayed;
SELECT id, message_id, state, attempts, finished_at IS NOT NULL AS finished FROM callback.callbacks WHERE campaign_id = 1 ORDER BY id;
SELECT callback.replay_all(campaign_id => 1) AS replayed_the_rest;
SELECT callback.replay_all(state => 'delivered', finished_from => now() - interval '3 hours') AS replayed_delivered;
SELECT id, state FROM callback.callbacks WHERE id = 2;
SELECT callback.replay_all(state => 'pending');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.replay_all(campaign_id => 99);
\echo :LAST_ERROR_SQLSTATE

-- Each callback's endpoint is computed once, when it is rendered: scheme, host and port (the
-- default port left out), lowercased, without credentials.
SELECT DISTINCT url, endpoint FROM callback.callbacks ORDER BY 1;
SELECT callback._endpoint(u) AS endpoint
FROM unnest(ARRAY['HTTPS://crm:s3cret@Hooks.Example.COM:443/dlr?x=1', 'http://127.0.0.1:8080',
                  'http://[::1]:9000/a#b', 'https://hooks.example.com:8443/']) u;

-- cancel: a callback not sent yet is given up, failed with who canceled it, and the next one
-- of its message and URL goes; one done, or on the wire, is not.
DELETE FROM callback.callbacks;
INSERT INTO callback.messages (campaign_id, channel, destination, status, intermediate_reports)
VALUES (1, 'sms', '+15550099', 'accepted', true) RETURNING id AS m \gset
UPDATE callback.messages SET status = 'sent' WHERE id = :m;
SELECT id, event, state FROM callback.callbacks WHERE message_id = :m ORDER BY id;
SELECT callback.cancel(min(id)) FROM callback.callbacks WHERE message_id = :m;
SELECT id, state, last_error FROM callback.callbacks WHERE message_id = :m ORDER BY id;
SELECT callback.cancel(min(id)) FROM callback.callbacks WHERE message_id = :m;
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.callbacks SET leased_until = now() + interval '1 minute', leased_by = 1 WHERE state = 'pending' AND message_id = :m;
SELECT callback.cancel(max(id)) FROM callback.callbacks WHERE message_id = :m;
\echo :LAST_ERROR_SQLSTATE
SELECT callback.cancel(424242);
\echo :LAST_ERROR_SQLSTATE

-- An administrator changes a callback's state through callback.callbacks, as above: its narrow
-- row moves between the queue and the done ones; what it sends, fixed when it was rendered
-- (callback.requests), cannot change; deleting it deletes every part of it.
SELECT min(id) AS c FROM callback.callbacks WHERE message_id = :m \gset
UPDATE callback.callbacks SET state = 'delivered', finished_at = now() WHERE id = :c RETURNING id, state, due_at;
SELECT (SELECT count(*) FROM callback.callbacks_undone WHERE id = :c) AS queued,
       (SELECT count(*) FROM callback.callbacks_done WHERE id = :c) AS done;
UPDATE callback.callbacks SET state = 'pending', due_at = now() WHERE id = :c RETURNING id, state, finished_at;
SELECT (SELECT count(*) FROM callback.callbacks_undone WHERE id = :c) AS queued,
       (SELECT count(*) FROM callback.callbacks_done WHERE id = :c) AS done;
UPDATE callback.callbacks SET url = 'https://elsewhere.example/' WHERE id = :c;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.deliveries (callback_id, account_id, attempt, started_at, duration, http_status)
VALUES (:c, 1, 1, now(), '1 ms', 503);
DELETE FROM callback.callbacks WHERE id = :c;
SELECT (SELECT count(*) FROM callback.requests WHERE id = :c) AS requests,
       (SELECT count(*) FROM callback.callbacks_undone WHERE id = :c) AS queued,
       (SELECT count(*) FROM callback.callbacks_done WHERE id = :c) AS done,
       (SELECT count(*) FROM callback.deliveries WHERE callback_id = :c) AS history;

-- A retry policy named by a callback not done cannot be deleted; once it is done, it can.
INSERT INTO callback.retry_policies (name, kind, max_attempts, step) VALUES ('patient', 'fixed', 5, '10 minutes');
UPDATE callback.campaigns SET retry_policy = 'patient' WHERE id = 1;
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550100', 'delivered');
SELECT count(*) AS queued_with_it FROM callback.callbacks WHERE retry_policy = 'patient' AND state = 'pending';
UPDATE callback.campaigns SET retry_policy = 'standard' WHERE id = 1;
DELETE FROM callback.retry_policies WHERE name = 'patient';
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.callbacks SET state = 'delivered' WHERE retry_policy = 'patient';
DELETE FROM callback.retry_policies WHERE name = 'patient' RETURNING name;
