-- pg_callback 0.1.0 to 0.2.0: operating it (views of the queue, endpoint health, workers and
-- campaigns; retry_now and replay_all), attaching application tables, what pg_dump keeps,
-- deferred recording (callback.events, rendered by the workers).
-- Frozen with the release: the files it was made from (sql/events.sql, views.sql, attach.sql,
-- dump.sql, tenants.sql) go on changing for later versions. tests/integration/test_upgrade.py checks that
-- it leaves the schema a fresh install of 0.2.0 makes.
\echo Use "ALTER EXTENSION pg_callback UPDATE TO '0.2.0'" to load this file. \quit

-- The functions in the library that 0.2.0 adds.
CREATE FUNCTION callback._worker_stats() RETURNS TABLE (
	"slot" INT,  /* i32 */
	"pid" INT,  /* i32 */
	"running" bool,  /* bool */
	"started_ms" bigint,  /* i64 */
	"in_flight" INT,  /* i32 */
	"delivered" bigint,  /* i64 */
	"retried" bigint,  /* i64 */
	"failed" bigint,  /* i64 */
	"last_claim_ms" bigint,  /* Option < i64 > */
	"last_claim_size" INT,  /* Option < i32 > */
	"last_write_ms" bigint  /* Option < i64 > */
)
STRICT VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'worker_stats_wrapper';
CREATE FUNCTION callback._attached_events()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', '_attached_events_wrapper';
CREATE FUNCTION callback._expand_events(
	"max" INT /* i32 */
) RETURNS INT /* i32 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'expand_events_wrapper';

-- sql/events.sql: events recorded for the workers to render (pg_callback.recording = deferred).
CREATE TABLE callback.events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    event text,
    account_id bigint NOT NULL,
    campaign_id bigint,
    message_id bigint,
    list_id bigint,
    -- A message's status change: the message as it was then.
    member_id bigint,
    batch_id text,
    channel text,
    destination text,
    status text,
    previous_status text,
    error_code text,
    error_message text,
    callback_data text,
    notify_url text,
    notify_format text,
    created_at timestamptz,
    status_at timestamptz,
    intermediate_reports bool,
    has_attempts bool,
    -- Any other event: its template variables and data, made by its trigger.
    vars jsonb,
    data jsonb
) USING heap;  -- src/event_row.rs writes its rows straight into the heap and its index
COMMENT ON TABLE callback.events IS 'Events recorded with pg_callback.recording = deferred whose callbacks a worker has not rendered yet (it does so as soon as their transaction commits, in id order, and deletes them). Usually empty.';
COMMENT ON COLUMN callback.events.event IS 'NULL for a message''s status change (which may make message.status, message.sent or message.problem, and message.final); otherwise the event type.';
COMMENT ON COLUMN callback.events.list_id IS 'The list of a message outside campaigns, when its table names one (attached tables); a member''s list is looked up when the callbacks are rendered.';
COMMENT ON FUNCTION callback._expand_events(int) IS
    'Renders the callbacks of up to n events of callback.events, oldest first, and deletes them; returns how many. The workers call it; one caller at a time (another returns -1 at once).';
-- The status of a message is checked by the recording trigger, not a foreign key (sql/model.sql,
-- queue.sql); the retry policies' guard no longer undoes a rename.
ALTER FUNCTION callback._record_event(text, bigint, bigint, bigint, bigint, text, text, text, jsonb, jsonb)
    RESET plan_cache_mode;
ALTER TABLE callback.messages DROP CONSTRAINT messages_status_fkey;
-- Order keys are compared byte by byte (sql/queue.sql).
ALTER TABLE callback.callbacks ALTER COLUMN order_key TYPE text COLLATE "C";
COMMENT ON COLUMN callback.messages.status IS 'One of callback.statuses: a change to any other is refused (23503), as a foreign key would, at less cost to every status change.';
CREATE OR REPLACE FUNCTION callback._retry_policy_in_use() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM callback.callbacks c WHERE c.retry_policy = OLD.name AND c.state IN ('waiting', 'pending', 'held')) THEN
        RAISE EXCEPTION 'retry policy "%" is in use by callbacks not yet done', OLD.name
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;
ALTER FUNCTION callback._retry_policy_in_use() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION callback._status_in_use() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    LOCK TABLE callback.messages IN SHARE MODE;
    IF EXISTS (SELECT FROM callback.messages m WHERE m.status = OLD.status) THEN
        RAISE EXCEPTION 'status "%" is in use by messages', OLD.status
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER statuses_in_use BEFORE DELETE OR UPDATE OF status ON callback.statuses
    FOR EACH ROW EXECUTE FUNCTION callback._status_in_use();
REVOKE ALL ON FUNCTION callback._status_in_use() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._status_in_use() TO callback_admin, callback_tenant;

-- Waiting callbacks whose release was missed are found by the workers' sweep through this.
CREATE INDEX callbacks_waiting ON callback.callbacks_undone (id) WHERE state = 'waiting';

ALTER TABLE callback.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON callback.events
    USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]));
GRANT ALL ON callback.events TO callback_admin;
GRANT USAGE ON SEQUENCE callback.events_id_seq TO callback_tenant;
GRANT ALL ON SEQUENCE callback.events_id_seq TO callback_admin;

-- sql/views.sql
-- What an operator looks at from psql: the queue per endpoint, each endpoint's health, the
-- workers, each campaign's deliveries; and what they do about it: send a callback now, replay
-- many. Views run with the caller's rights, so a tenant sees its own account's rows.

-- The scheme, host and port of a URL: what delivery limits per host and health is judged by.
CREATE FUNCTION callback._endpoint(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN lower(substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*'));

CREATE VIEW callback.queue WITH (security_invoker = true) AS
SELECT callback._endpoint(c.url) AS endpoint,
       count(*) AS depth,
       count(*) FILTER (WHERE c.state = 'pending' AND c.due_at <= now() AND c.leased_until IS NULL) AS due,
       count(*) FILTER (WHERE c.leased_until > now()) AS in_flight,
       count(*) FILTER (WHERE c.state = 'pending' AND c.due_at > now()) AS retrying,
       count(*) FILTER (WHERE c.state = 'waiting') AS waiting,
       count(*) FILTER (WHERE c.state = 'held') AS held,
       coalesce(max(now() - c.due_at) FILTER (WHERE c.state = 'pending' AND c.due_at <= now()), '0') AS lag,
       min(c.recorded_at) AS oldest_recorded_at
FROM callback.callbacks c
WHERE c.state IN ('waiting', 'pending', 'held')
GROUP BY 1;
COMMENT ON VIEW callback.queue IS 'Callbacks not done yet, per endpoint (scheme, host and port): how many, due now, in flight, waiting for a retry, waiting behind an earlier one, held; lag: how long the longest-due callback has been due.';

CREATE VIEW callback.endpoint_health WITH (security_invoker = true) AS
WITH attempts AS (
    SELECT callback._endpoint(c.url) AS endpoint, d.started_at, d.error IS NULL AS ok, d.http_status, d.error
    FROM callback.deliveries d
    JOIN callback.callbacks c ON c.id = d.callback_id
), last_success AS (
    SELECT endpoint, max(started_at) FILTER (WHERE ok) AS at FROM attempts GROUP BY endpoint
)
SELECT a.endpoint,
       count(*) AS attempts,
       round(avg(a.ok::int), 4) AS success_rate,
       count(*) FILTER (WHERE a.started_at > now() - interval '1 hour') AS attempts_last_hour,
       round(avg(a.ok::int) FILTER (WHERE a.started_at > now() - interval '1 hour'), 4) AS success_rate_last_hour,
       count(*) FILTER (WHERE NOT a.ok AND a.started_at > coalesce(s.at, '-infinity')) AS consecutive_failures,
       s.at AS last_success_at,
       max(a.started_at) FILTER (WHERE NOT a.ok) AS last_failure_at,
       (array_agg(a.error ORDER BY a.started_at DESC) FILTER (WHERE NOT a.ok))[1] AS last_error,
       max(a.started_at) AS last_attempt_at
FROM attempts a
JOIN last_success s USING (endpoint)
GROUP BY a.endpoint, s.at;
COMMENT ON VIEW callback.endpoint_health IS 'Every endpoint (scheme, host and port) in the history kept: attempts and success rate, overall and in the last hour; failures since the last success; the last success, failure and error.';

CREATE VIEW callback.workers AS
SELECT w.slot, w.pid, w.running, to_timestamp(w.started_ms / 1000.0) AS started_at, w.in_flight,
       w.delivered, w.retried, w.failed,
       to_timestamp(w.last_claim_ms / 1000.0) AS last_claim_at, w.last_claim_size,
       to_timestamp(w.last_write_ms / 1000.0) AS last_write_at
FROM callback._worker_stats() w;
COMMENT ON VIEW callback.workers IS 'Each worker slot used since the server started, from shared memory: the process in it now (running) or last, requests in flight, attempts delivered, to be retried and failed for good since the server started, the last batch claimed and the last results written.';

CREATE VIEW callback.campaign_summary WITH (security_invoker = true) AS
SELECT c.id AS campaign_id, c.account_id, c.name, c.status, c.callbacks_enabled,
       count(cb.id) AS callbacks,
       count(cb.id) FILTER (WHERE cb.state = 'delivered') AS delivered,
       count(cb.id) FILTER (WHERE cb.state = 'failed') AS failed,
       count(cb.id) FILTER (WHERE cb.state IN ('waiting', 'pending')) AS to_send,
       count(cb.id) FILTER (WHERE cb.state = 'held') AS held,
       coalesce(sum(cb.attempts), 0) AS attempts,
       max(cb.finished_at) FILTER (WHERE cb.state = 'delivered') AS last_delivered_at,
       (SELECT count(*) FROM callback.alerts a WHERE a.campaign_id = c.id) AS alerts
FROM callback.campaigns c
LEFT JOIN callback.callbacks cb ON cb.campaign_id = c.id
GROUP BY c.id;
COMMENT ON VIEW callback.campaign_summary IS 'Each campaign''s callbacks: how many, delivered, failed, still to send, held; attempts made, the last delivery, alerts raised.';

CREATE FUNCTION callback.retry_now(callback_id bigint) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    current_state callback.callback_state;
BEGIN
    UPDATE callback.callbacks c SET due_at = now()
    WHERE c.id = retry_now.callback_id AND c.state = 'pending' AND c.leased_until IS NULL;
    IF FOUND THEN
        PERFORM callback._wake_on_commit();
        RETURN now();
    END IF;
    SELECT c.state INTO current_state FROM callback.callbacks c WHERE c.id = retry_now.callback_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'callback % does not exist', callback_id USING ERRCODE = 'undefined_object';
    END IF;
    RAISE EXCEPTION 'callback % is % and cannot be sent now', callback_id,
        CASE WHEN current_state = 'pending' THEN 'being sent' ELSE current_state::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = CASE current_state
                  WHEN 'waiting' THEN 'It waits for an earlier callback with the same URL and message; send that one.'
                  WHEN 'held' THEN 'Its campaign''s callbacks are disabled: callback.enable_campaign_callbacks().'
                  WHEN 'pending' THEN 'A worker is sending it now.'
                  ELSE 'It is done: callback.replay() sends it again.' END;
END $$;
COMMENT ON FUNCTION callback.retry_now(bigint) IS
    'Makes a callback waiting for its next attempt due now (e.g. once its endpoint is fixed); returns when.';

-- The first replayed callback of each order key is due at once unless one of its key is not
-- done yet; the others wait their turn, as they did the first time.
CREATE FUNCTION callback.replay_all(campaign_id bigint DEFAULT NULL, finished_from timestamptz DEFAULT NULL,
                                    finished_to timestamptz DEFAULT NULL, state callback.callback_state DEFAULT 'failed')
RETURNS bigint
LANGUAGE plpgsql SET enable_nestloop = off AS $$
DECLARE
    replayed bigint;
BEGIN
    IF replay_all.state IS NULL OR replay_all.state NOT IN ('failed', 'delivered') THEN
        RAISE EXCEPTION 'only failed or delivered callbacks can be replayed, not %', coalesce(replay_all.state::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF replay_all.campaign_id IS NOT NULL THEN
        PERFORM callback._campaign_exists(replay_all.campaign_id);
    END IF;
    WITH chosen AS (
        SELECT c.id, c.order_key, min(c.id) OVER (PARTITION BY c.order_key) AS first
        FROM callback.callbacks c
        WHERE c.state = replay_all.state
          AND (replay_all.campaign_id IS NULL OR c.campaign_id = replay_all.campaign_id)
          AND (replay_all.finished_from IS NULL OR c.finished_at >= replay_all.finished_from)
          AND (replay_all.finished_to IS NULL OR c.finished_at < replay_all.finished_to)
    ), busy AS (
        SELECT DISTINCT u.order_key FROM callback.callbacks u JOIN chosen USING (order_key)
        WHERE u.state IN ('waiting', 'pending', 'held')
    )
    UPDATE callback.callbacks c
    SET state = CASE WHEN c.id = chosen.first AND busy.order_key IS NULL THEN 'pending' ELSE 'waiting' END
                    ::callback.callback_state,
        due_at = now(), attempts = 0, finished_at = NULL, leased_until = NULL, leased_by = NULL
    FROM chosen LEFT JOIN busy USING (order_key)
    WHERE c.id = chosen.id;
    GET DIAGNOSTICS replayed = ROW_COUNT;
    IF replayed > 0 THEN
        PERFORM callback._wake_on_commit();
    END IF;
    RETURN replayed;
END $$;
COMMENT ON FUNCTION callback.replay_all(bigint, timestamptz, timestamptz, callback.callback_state) IS
    'Sends again every failed (or, with state => ''delivered'', delivered) callback of a campaign (NULL: all) finished in [finished_from, finished_to) (NULL: unbounded), in event order per target; returns how many.';

-- sql/attach.sql
-- Attaching pg_callback to an application's own message table: its status changes record
-- callbacks exactly as callback.messages' do (src/record.rs, _attached_events), with the
-- campaign's or list's settings. Two triggers, like callback.messages': on INSERT, and on
-- UPDATE of the status column when it changes.

CREATE FUNCTION callback.attach(
    table_name regclass,
    id_column name,
    status_column name,
    campaign_column name DEFAULT NULL,
    list_column name DEFAULT NULL,
    destination_column name DEFAULT NULL,
    channel_column name DEFAULT NULL,
    error_code_column name DEFAULT NULL,
    error_message_column name DEFAULT NULL,
    callback_data_column name DEFAULT NULL,
    batch_column name DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    mapping text[] := '{}';
    field text;
    col name;
    type_name regtype;
    args text;
BEGIN
    IF table_name IS NULL OR id_column IS NULL OR status_column IS NULL THEN
        RAISE EXCEPTION 'table_name, id_column and status_column must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (campaign_column IS NULL) = (list_column IS NULL) THEN
        RAISE EXCEPTION 'give campaign_column or list_column, not both or neither'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A message''s callback settings and account come from its campaign, or from its list outside campaigns.';
    END IF;
    IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = table_name AND t.tgname = 'pg_callback_record_status') THEN
        RAISE EXCEPTION '% is attached already', table_name
            USING ERRCODE = 'duplicate_object', HINT = 'callback.detach() it first to attach it with other columns.';
    END IF;
    FOR field, col IN
        SELECT * FROM (VALUES ('id', id_column), ('status', status_column), ('campaign_id', campaign_column),
                              ('list_id', list_column), ('destination', destination_column), ('channel', channel_column),
                              ('error_code', error_code_column), ('error_message', error_message_column),
                              ('callback_data', callback_data_column), ('batch_id', batch_column)) AS m (field, col)
        WHERE m.col IS NOT NULL
    LOOP
        SELECT a.atttypid::regtype INTO type_name FROM pg_attribute a
        WHERE a.attrelid = table_name AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of % does not exist', col, table_name USING ERRCODE = 'undefined_column';
        END IF;
        IF field IN ('id', 'campaign_id', 'list_id') AND type_name NOT IN ('smallint', 'integer', 'bigint') THEN
            RAISE EXCEPTION 'column "%" of % is %, not an integer', col, table_name, type_name
                USING ERRCODE = 'datatype_mismatch', HINT = format('The %s column must be smallint, integer or bigint.', field);
        END IF;
        mapping := mapping || format('%s=%s', field, col);
    END LOOP;
    args := (SELECT string_agg(quote_literal(m), ', ') FROM unnest(mapping) m);
    EXECUTE format('CREATE TRIGGER pg_callback_record_insert AFTER INSERT ON %s
                    FOR EACH ROW EXECUTE FUNCTION callback._attached_events(%s)', table_name, args);
    EXECUTE format('CREATE TRIGGER pg_callback_record_status AFTER UPDATE OF %I ON %s
                    FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I) EXECUTE FUNCTION callback._attached_events(%s)',
                   status_column, table_name, status_column, status_column, args);
END $$;
COMMENT ON FUNCTION callback.attach(regclass, name, name, name, name, name, name, name, name, name, name) IS
    'Makes the status changes of an application''s table record callbacks as callback.messages'' do: names its id and status columns, its campaign (or list) column, and optionally destination, channel, error code and message, callback data and batch columns.';

CREATE FUNCTION callback.detach(table_name regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = table_name AND t.tgname = 'pg_callback_record_status') THEN
        RAISE EXCEPTION '% is not attached', table_name USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('DROP TRIGGER pg_callback_record_insert ON %s', table_name);
    EXECUTE format('DROP TRIGGER pg_callback_record_status ON %s', table_name);
END $$;
COMMENT ON FUNCTION callback.detach(regclass) IS 'Stops recording callbacks for the table''s status changes (drops the triggers attach() made).';

-- sql/dump.sql
-- What pg_dump keeps: every row users wrote (accounts, lists, campaigns, members, messages,
-- attempts, subscriptions, delivery-status webhooks, alerts), the retry policies and statuses
-- they added (not the built-in ones, which CREATE EXTENSION makes), the queue (callbacks not
-- yet done), the callbacks done and their history, and where every identity sequence stands.
-- account_roles is marked in sql/tenants.sql, where it is created.
--
-- Restore with triggers off (PGOPTIONS='-c session_replication_role=replica' psql -f dump.sql,
-- as a superuser): otherwise restoring the messages would record their callbacks once more.

-- One call a statement: each updates the extension's row.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['accounts', 'lists', 'campaigns', 'members', 'messages', 'attempts', 'subscriptions',
                             'delivery_webhooks', 'alerts', 'events', 'callbacks_undone', 'callbacks_done', 'deliveries'] LOOP
        PERFORM pg_catalog.pg_extension_config_dump(format('callback.%I', t)::regclass, '');
    END LOOP;
    -- Where each id sequence stands.
    FOREACH t IN ARRAY ARRAY['accounts', 'lists', 'campaigns', 'members', 'messages', 'attempts', 'subscriptions',
                             'alerts', 'events', 'callbacks', 'deliveries'] LOOP
        PERFORM pg_catalog.pg_extension_config_dump(pg_get_serial_sequence(format('callback.%I', t), 'id')::regclass, '');
    END LOOP;
    -- The retry policies and statuses users added: CREATE EXTENSION makes the built-in ones.
    PERFORM pg_catalog.pg_extension_config_dump('callback.retry_policies', $f$WHERE name NOT IN ('strict', 'standard')$f$);
    PERFORM pg_catalog.pg_extension_config_dump('callback.statuses',
        format('WHERE status NOT IN (%s)', (SELECT string_agg(quote_literal(status), ', ' ORDER BY status) FROM callback.statuses)));
END $$;
SELECT pg_catalog.pg_extension_config_dump('callback.account_roles', '');

-- Privileges of what is new, as sql/tenants.sql gives them.
ALTER FUNCTION callback._attached_events() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
-- Triggers that need not run as the owner run as the caller again (a definer's setup cost
-- every status change about 5 %).
-- One BEFORE trigger, in Rust, sets updated_at and records a new status (src/triggers.rs):
-- PL/pgSQL's call, the after-trigger queue and the WHEN clause cost every change more than
-- the rest; the same function records inserts AFTER them. It runs as the caller and its
-- statements as the owner.
DROP TRIGGER messages_touch ON callback.messages;
DROP TRIGGER messages_record_insert ON callback.messages;
DROP TRIGGER messages_record_status ON callback.messages;
DROP FUNCTION callback._touch();
DROP FUNCTION callback._message_events();
CREATE FUNCTION callback._message_record() RETURNS trigger LANGUAGE c AS 'MODULE_PATHNAME', '_message_record_wrapper';
REVOKE ALL ON FUNCTION callback._message_record() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._message_record() TO callback_admin, callback_tenant;
CREATE TRIGGER messages_record BEFORE UPDATE ON callback.messages
    FOR EACH ROW EXECUTE FUNCTION callback._message_record();
CREATE TRIGGER messages_record_insert AFTER INSERT ON callback.messages
    FOR EACH ROW EXECUTE FUNCTION callback._message_record();
ALTER FUNCTION callback._check_row() SECURITY INVOKER RESET search_path;
ALTER FUNCTION callback._check_event_urls() SECURITY INVOKER RESET search_path;
ALTER FUNCTION callback._member_derive() SECURITY INVOKER RESET search_path;
ALTER FUNCTION callback._message_derive() SECURITY INVOKER RESET search_path;
ALTER FUNCTION callback._attempt_derive() SECURITY INVOKER RESET search_path;
ALTER FUNCTION callback._settings_changed() SECURITY INVOKER RESET search_path;
REVOKE ALL ON FUNCTION callback._worker_stats(), callback._attached_events(), callback._expand_events(int), callback._endpoint(text),
    callback.retry_now(bigint), callback.replay_all(bigint, timestamptz, timestamptz, callback.callback_state),
    callback.attach(regclass, name, name, name, name, name, name, name, name, name, name), callback.detach(regclass)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._worker_stats(), callback._attached_events(), callback._expand_events(int), callback._endpoint(text),
    callback.retry_now(bigint), callback.replay_all(bigint, timestamptz, timestamptz, callback.callback_state),
    callback.attach(regclass, name, name, name, name, name, name, name, name, name, name), callback.detach(regclass)
    TO callback_admin;
GRANT EXECUTE ON FUNCTION callback._endpoint(text), callback.retry_now(bigint),
    callback.replay_all(bigint, timestamptz, timestamptz, callback.callback_state) TO callback_tenant;
GRANT ALL ON callback.queue, callback.endpoint_health, callback.workers, callback.campaign_summary TO callback_admin;
GRANT SELECT ON callback.queue, callback.endpoint_health, callback.campaign_summary TO callback_tenant;
