-- Every event type with its payload (timestamps masked), in JSON, XML, form and GET, with
-- credentials, custom headers and the signing secret carried to the callback.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

CREATE FUNCTION pg_temp.shown(body text) RETURNS text LANGUAGE sql AS $$
    -- now() varies from run to run; the attempts' fixed times (2026-01-15) are shown.
    SELECT regexp_replace(body, '(?!2026-01-15)\d{4}-\d\d-\d\dT\d\d(:|%3A)\d\d(:|%3A)\d\d\.\d{6}Z', '<time>', 'g')
$$;

INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url, callback_events, callback_headers, callback_basic_auth, signing_secret)
VALUES (1, 'callers', 'https://crm.example.com/events',
        '{message.sent,message.status,message.problem,message.attempt,message.final,campaign.complete}',
        '{"X-Crm-Tenant": "acme"}', 'crm:s3cret', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'renewals');
INSERT INTO callback.members (list_id, destination, attributes) VALUES (1, '+919876543210', '{"name": "Asha"}');
INSERT INTO callback.messages (campaign_id, member_id, batch_id, channel, destination, callback_data)
VALUES (1, 1, 'batch-1', 'voice', '+919876543210', 'crm-ref-1');

-- Two call attempts (seed 003), then the message's final status.
INSERT INTO callback.attempts (message_id, status, started_at, ended_at)
VALUES (1, 'busy', '2026-01-15 09:05:00+05:30', '2026-01-15 09:05:47+05:30');
INSERT INTO callback.attempts (message_id, started_at) VALUES (1, '2026-01-15 09:35:00+05:30');
SELECT count(*) AS recorded_while_in_progress FROM callback.callbacks;
UPDATE callback.attempts SET status = 'completed', ended_at = '2026-01-15 09:36:10+05:30' WHERE attempt_no = 2;
UPDATE callback.messages SET status = 'sent';
UPDATE callback.messages SET status = 'completed';
-- A platform problem on another message.
INSERT INTO callback.messages (campaign_id, channel, destination, error_code, error_message)
VALUES (1, 'sms', '+919876543211', 'E_TEMPLATE', 'template "renewal" has no SMS body');
UPDATE callback.messages SET status = 'error' WHERE id = 2;
-- The campaign ends.
UPDATE callback.campaigns SET status = 'completed';

SELECT id, c.event, c.message_id, c.method, c.url, c.headers, r.auth_header, r.signing_secret IS NOT NULL AS signed, c.state, c.attempts
FROM callback.callbacks c JOIN callback.requests r USING (id) ORDER BY id;

SELECT event, jsonb_pretty(pg_temp.shown(body)::jsonb) AS body FROM callback.callbacks ORDER BY id;

-- callback.requests stores each body compressed (callback._packed_body), in a fraction of its
-- bytes; callback._body gives back the body sent, byte for byte, as callback.callbacks shows it.
SELECT r.id, octet_length(c.body) AS body_bytes, octet_length(r.body) * 3 < octet_length(c.body) AS stored_in_a_third,
       callback._body(r.body) = c.body AS same, callback._body(callback._packed_body(c.body)) = c.body AS round_trip
FROM callback.callbacks c JOIN callback.requests r USING (id) WHERE r.body IS NOT NULL ORDER BY id;

-- Nor does it store what it can work out again: a single event's order key (its message, else
-- its campaign, and its URL: callback._order_key), its endpoint (callback._endpoint(url)), the
-- Content-Type of a JSON body (callback._headers_sent).
SELECT id, r.order_key AS stored, c.order_key, c.endpoint, r.headers AS stored, c.headers
FROM callback.callbacks c JOIN callback.requests r USING (id) ORDER BY id;

-- The same event as XML and as form fields.
UPDATE callback.lists SET callback_format = 'xml';
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550009', 'delivered');
UPDATE callback.lists SET callback_format = 'form';
UPDATE callback.messages SET status = 'read' WHERE id = 3;
SELECT headers ->> 'Content-Type' AS content_type, pg_temp.shown(body) AS body
FROM callback.callbacks WHERE message_id = 3 ORDER BY id;

-- GET: the data travels in the URL; no body, no Content-Type. A bearer token instead of basic auth.
UPDATE callback.lists SET callback_method = 'GET', callback_url = 'https://crm.example.com/dlr?id=${id}&status=${status}',
                          callback_basic_auth = NULL, callback_bearer_token = 'tok_abc';
UPDATE callback.messages SET status = 'failed' WHERE id = 3;
SELECT c.method, c.url, c.headers, c.body, r.auth_header FROM callback.callbacks c JOIN callback.requests r USING (id) WHERE id = (SELECT max(id) FROM callback.requests);

-- Each callback has its own webhook id, a random (version 4) UUID. The first callback of each order key (message or
-- campaign, and URL) is pending and due now; the later ones wait their turn.
SELECT count(DISTINCT webhook_id) = count(*) AS distinct_webhook_ids,
       bool_and(webhook_id::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$') AS random_uuids,
       bool_and(CASE WHEN id = first THEN state = 'pending' AND due_at <= now() ELSE state = 'waiting' END) AS in_order
FROM (SELECT *, min(id) OVER (PARTITION BY order_key) AS first FROM callback.callbacks) c;

-- updated_at is the time of the last change, whatever the UPDATE says (callback._message_record()).
BEGIN;
UPDATE callback.messages SET updated_at = '2000-01-01', created_at = '2000-01-01' WHERE id = 3;
SELECT updated_at = now() AS updated_now, created_at = '2000-01-01' AS created_as_set FROM callback.messages WHERE id = 3;
COMMIT;

-- An INSERT ... ON CONFLICT that updates instead records the update only (failed to delivered:
-- one message.status), nothing for the row it did not insert.
DELETE FROM callback.callbacks;
INSERT INTO callback.messages (id, campaign_id, channel, destination, status) OVERRIDING SYSTEM VALUE
VALUES (3, 1, 'sms', '+15550009', 'delivered')
ON CONFLICT (id) DO UPDATE SET status = excluded.status;
SELECT event, message_id, url FROM callback.callbacks ORDER BY id;
