-- pg_callback.recording = deferred: a status change stores its event in callback.events;
-- rendering it (_expand_events, which the workers call as soon as the transaction commits)
-- makes the same callbacks as immediate recording would have, stamped with the event's time.
-- A URL that cannot be filled then makes a failed callback saying why, as the change can no
-- longer be refused.
-- This cluster runs no workers, so the file renders the events itself.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

SET pg_callback.recording = immediate;
INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url, callback_events)
VALUES (1, 'callers', 'https://crm.example.com/dlr/${studentId}?status=${status}',
        '{message.status,message.sent,message.final,message.attempt}');
INSERT INTO callback.campaigns (list_id, name, env) VALUES (1, 'renewals', '{"term": "fall"}');
INSERT INTO callback.subscriptions (account_id, name, callback_url, events)
VALUES (1, 'bi', 'https://bi.example.com/hook', '{message.status}');
INSERT INTO callback.members (list_id, destination, attributes) VALUES
    (1, '+15550001', '{"studentId": "s-1"}'),
    (1, '+15550002', '{"studentId": "s-2"}'),
    (1, '+15550003', '{"name": "no studentId"}');
-- Two messages alike but for their member: the first recorded deferred, the second immediate.
INSERT INTO callback.messages (campaign_id, member_id, channel, destination, callback_data, intermediate_reports)
VALUES (1, 1, 'voice', '+15550001', 'ref-1', true), (1, 2, 'voice', '+15550002', 'ref-1', true);
DELETE FROM callback.callbacks;

CREATE FUNCTION pg_temp.changes(message bigint) RETURNS void LANGUAGE sql AS $$
    UPDATE callback.messages SET status = 'sent' WHERE id = message;
    INSERT INTO callback.attempts (message_id, status, started_at, ended_at)
    VALUES (message, 'completed', '2026-01-15 09:05:00+00', '2026-01-15 09:05:47+00');
    UPDATE callback.messages SET status = 'completed', error_code = 'E0' WHERE id = message;
$$;

SET pg_callback.recording = deferred;
SELECT pg_temp.changes(1);
SELECT count(*) AS callbacks_before_rendering FROM callback.callbacks;
SELECT id, coalesce(event, '(status change)') AS event, message_id, member_id, status, previous_status,
       error_code, intermediate_reports, vars ->> 'attemptNo' AS attempt_no
FROM callback.events ORDER BY id;
CREATE TEMP TABLE stored AS SELECT id, recorded_at FROM callback.events;

SET pg_callback.recording = immediate;
SELECT pg_temp.changes(2);

SELECT callback._expand_events(100) AS rendered;
SELECT count(*) AS events_left FROM callback.events;

-- Message 1's callbacks, in the order of its events: the first of each URL pending, the rest
-- waiting behind it.
SELECT event, target, url, state
FROM callback.callbacks WHERE message_id = 1 ORDER BY id;

-- The same callbacks as immediate recording made for message 2, bodies included, once what
-- differs between the two (ids, member, times) is set aside.
CREATE FUNCTION pg_temp.alike(message bigint) RETURNS TABLE (event text, target text, url text, state text, headers text, body text)
LANGUAGE sql AS $$
    SELECT c.event, c.target, replace(c.url, 's-' || message, 's-N'), c.state, c.headers::text,
           (c.body::jsonb #- '{timestamp}' #- '{data,message_id}' #- '{data,member_id}' #- '{data,destination}'
                          #- '{data,created_at}' #- '{data,status_at}' #- '{data,attempt_ids}' #- '{data,attempt_id}')::text
    FROM callback.callbacks c WHERE c.message_id = message
$$;
SELECT count(*) AS callbacks_each, (SELECT count(*) FROM pg_temp.alike(2)) AS immediate_callbacks,
       count(*) FILTER (WHERE a IN (SELECT i FROM pg_temp.alike(2) i)) AS the_same
FROM pg_temp.alike(1) a;

-- Stamped with the time of the event, not of the rendering.
SELECT bool_and((c.body::jsonb ->> 'timestamp')::timestamptz IN (SELECT recorded_at FROM stored)) AS at_event_time
FROM callback.callbacks c WHERE c.message_id = 1;

-- message.final lists the message's attempts, taken with its stored event.
SELECT c.body::jsonb -> 'data' -> 'attempt_ids' = (SELECT jsonb_agg(a.id ORDER BY a.attempt_no)
                                                   FROM callback.attempts a WHERE a.message_id = 1)
       AS lists_its_attempts
FROM callback.callbacks c WHERE c.message_id = 1 AND c.event = 'message.final';

-- Nothing recorded while notify is off, or for an intermediate status not reported.
SET pg_callback.recording = deferred;
INSERT INTO callback.messages (campaign_id, member_id, channel, destination, notify)
VALUES (1, 1, 'sms', '+15550001', false), (1, 1, 'sms', '+15550001', true);
UPDATE callback.messages SET status = 'delivered' WHERE id = 3;
UPDATE callback.messages SET status = 'accepted' WHERE id = 4;
SELECT count(*) AS events FROM callback.events;

-- A member without the attribute the URL needs: the change is kept, its callbacks fail at
-- rendering, saying why (immediate recording refuses the change: templates.sql). The account's
-- subscription, whose URL needs nothing, is made as usual.
INSERT INTO callback.messages (campaign_id, member_id, channel, destination) VALUES (1, 3, 'sms', '+15550003');
UPDATE callback.messages SET status = 'delivered' WHERE member_id = 3;
SELECT status FROM callback.messages WHERE member_id = 3;
SELECT callback._expand_events(100) AS rendered;
SELECT c.event, c.target, c.state, c.url, c.last_error, c.finished_at IS NOT NULL AS finished
FROM callback.callbacks c JOIN callback.messages m ON m.id = c.message_id
WHERE m.member_id = 3 ORDER BY c.target, c.event;

-- An event of a held campaign is rendered held; enabling releases it.
SELECT callback.disable_campaign_callbacks(1);
INSERT INTO callback.messages (campaign_id, member_id, channel, destination, status) VALUES (1, 1, 'sms', '+15550001', 'delivered');
SELECT callback._expand_events(100) AS rendered;
SELECT c.event, c.target, c.state FROM callback.callbacks c WHERE c.message_id = 6 ORDER BY c.id;
SELECT callback.enable_campaign_callbacks(1);
SELECT c.event, c.target, c.state FROM callback.callbacks c WHERE c.message_id = 6 ORDER BY c.id;

-- Rolled back with its transaction, like everything else written in it.
BEGIN;
UPDATE callback.messages SET status = 'read' WHERE id = 1;
SELECT count(*) AS events_in_transaction FROM callback.events;
ROLLBACK;
SELECT count(*) AS events_after_rollback FROM callback.events;
