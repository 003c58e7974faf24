-- Attaching pg_callback to an application's own message table: its status changes record
-- callbacks as callback.messages' do, with its campaign's (or list's) settings; detaching
-- stops it. A CRM table with its own names and types.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
DROP TABLE IF EXISTS public.crm_sms, public.erp_notices;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url, callback_events)
VALUES (1, 'customers', 'https://crm.example.com/dlr/${id}?status=${status}&to=${destination}', '{message.status, message.final}');
INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'spring');

CREATE TABLE public.crm_sms (
    sms_id integer PRIMARY KEY,
    campaign integer,
    phone text,
    state varchar(20) NOT NULL,
    failure text,
    ref text
);
SELECT callback.attach('public.crm_sms', id_column => 'sms_id', status_column => 'state', campaign_column => 'campaign',
                       destination_column => 'phone', error_message_column => 'failure', callback_data_column => 'ref');
SELECT tgname, pg_get_triggerdef(oid) LIKE '%_attached_events(''id=sms_id'', ''status=state''%' AS named_columns
FROM pg_trigger WHERE tgrelid = 'public.crm_sms'::regclass ORDER BY tgname;

-- A status that is not final records nothing; the final one records message.status and
-- message.final, filled from the row like a message's.
INSERT INTO public.crm_sms VALUES (7, 1, '+15550007', 'queued', NULL, 'order=981');
SELECT count(*) AS callbacks FROM callback.callbacks;
UPDATE public.crm_sms SET state = 'undeliverable', failure = 'absent subscriber' WHERE sms_id = 7;
SELECT event, target, message_id, campaign_id, account_id, url FROM callback.callbacks ORDER BY id;
SELECT jsonb_pretty(body::jsonb #- '{timestamp}' #- '{data,status_at}') AS body FROM callback.callbacks ORDER BY id LIMIT 1;
-- The same change on callback.messages makes a body with the same fields.
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+15550001', 'queued');
UPDATE callback.messages SET status = 'undeliverable' WHERE id = 1;
SELECT m.event,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(m.body::jsonb -> 'data') k)
       = (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(a.body::jsonb -> 'data') k) AS same_fields
FROM callback.callbacks m JOIN callback.callbacks a ON a.event = m.event AND a.message_id = 7
WHERE m.message_id = 1 ORDER BY m.event;

-- A status pg_callback does not know records nothing; a row of a missing campaign is refused.
UPDATE public.crm_sms SET state = 'DELIVRD' WHERE sms_id = 7;
SELECT count(*) AS callbacks FROM callback.callbacks;
INSERT INTO public.crm_sms VALUES (8, 99, '+15550008', 'delivered', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE

-- A table whose messages belong to lists, outside campaigns, with bigint ids.
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'notices', 'https://erp.example.com/notices/${id}');
CREATE TABLE public.erp_notices (id bigint PRIMARY KEY, list_id bigint, status text);
SELECT callback.attach('public.erp_notices', 'id', 'status', list_column => 'list_id');
INSERT INTO public.erp_notices VALUES (5000000000, 2, 'delivered');
SELECT event, target, message_id, campaign_id, url FROM callback.callbacks WHERE message_id = 5000000000 ORDER BY id;

-- Detached, its changes record nothing.
SELECT callback.detach('public.crm_sms');
UPDATE public.crm_sms SET state = 'delivered' WHERE sms_id = 7;
SELECT count(*) AS callbacks_for_7 FROM callback.callbacks WHERE message_id = 7;

-- Bad input.
SELECT callback.attach('public.crm_sms', 'sms_id', 'state');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.attach('public.crm_sms', 'sms_id', 'state', campaign_column => 'campaign', list_column => 'campaign');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.attach('public.crm_sms', 'sms_id', 'status', campaign_column => 'campaign');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.attach('public.crm_sms', 'phone', 'state', campaign_column => 'campaign');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.attach('public.erp_notices', 'id', 'status', list_column => 'list_id');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.attach('public.no_such_table', 'id', 'status', list_column => 'list_id');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.detach('public.crm_sms');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'public.crm_sms'::regclass;

DROP EXTENSION pg_callback CASCADE;
DROP TABLE public.crm_sms, public.erp_notices;
