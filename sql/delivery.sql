-- What delivery leads to: a campaign's callbacks disabled after repeated failure (with the
-- alert), enabled again, failed callbacks replayed, the history of every attempt, and the
-- campaign report.

CREATE TABLE callback.alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    callback_id bigint,
    raised_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL,
    notification_list text[] NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE callback.alerts IS 'One row each time repeated failure disabled a campaign''s callbacks: who to tell and why. Each is also sent as NOTIFY pg_callback_alerts and as a campaign.callbacks_disabled callback to the campaign''s alert_url.';

-- Disabling holds the campaign's pending callbacks (those its own settings direct); enabling
-- releases every held one, due at once. Both read the whole queue, which keeps no index by
-- campaign (an index entry less for every callback rendered): they are rare, and a campaign's
-- callbacks may be most of the queue.
-- Hash joins, whatever the statistics say: a queue table filled moments ago looks empty to
-- the planner, and a nested loop over a million held callbacks would take hours.
CREATE FUNCTION callback._campaign_callbacks_switched() RETURNS trigger
LANGUAGE plpgsql SET enable_nestloop = off AS $$
BEGIN
    IF NEW.callbacks_enabled THEN
        -- The first held callback of each order key is due at once (unless one of its key is
        -- still in flight or waiting); the rest wait their turn. Joins, not a subquery per row:
        -- a campaign may hold a million callbacks.
        WITH held AS (
            SELECT order_hash, min(id) AS first FROM callback.callbacks_undone
            WHERE campaign_id = NEW.id AND state = 'held'
            GROUP BY order_hash
        ), busy AS (
            SELECT DISTINCT o.order_hash FROM callback.callbacks_undone o JOIN held USING (order_hash)
            WHERE o.state IN ('waiting', 'pending')
        )
        UPDATE callback.callbacks_undone c
        SET state = CASE WHEN c.id = held.first AND busy.order_hash IS NULL THEN 'pending' ELSE 'waiting' END
                        ::callback.callback_state,
            due_at = now()
        FROM held LEFT JOIN busy USING (order_hash)
        WHERE c.campaign_id = NEW.id AND c.state = 'held' AND c.order_hash = held.order_hash;
        PERFORM callback._wake_on_commit();
    ELSE
        -- Not those on the wire (leased): their worker writes how they went.
        UPDATE callback.callbacks_undone SET state = 'held'
        WHERE campaign_id = NEW.id AND state = 'pending' AND target IN ('campaign_event', 'campaign', 'list')
          AND (leased_until IS NULL OR leased_until < now());
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER campaigns_callbacks_switched AFTER UPDATE OF callbacks_enabled ON callback.campaigns
    FOR EACH ROW WHEN (OLD.callbacks_enabled IS DISTINCT FROM NEW.callbacks_enabled)
    EXECUTE FUNCTION callback._campaign_callbacks_switched();

-- Called by the worker when callback failed_id failed for good under a policy that disables
-- its campaign: disables the campaign's callbacks, records the alert, sends NOTIFY
-- pg_callback_alerts and records a campaign.callbacks_disabled callback. Returns the alert id,
-- or NULL when the campaign was disabled already.
CREATE FUNCTION callback._disable_campaign_callbacks(campaign_id bigint, failed_id bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    campaign callback.campaigns;
    failed callback.callbacks;
    reason text;
    alert_id bigint;
BEGIN
    UPDATE callback.campaigns c SET callbacks_enabled = false
    WHERE c.id = _disable_campaign_callbacks.campaign_id AND c.callbacks_enabled
    RETURNING * INTO campaign;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO failed FROM callback.callbacks c WHERE c.id = failed_id;
    reason := format('callback %s (%s) to %s failed after %s attempts: %s',
                     failed.id, failed.event, failed.url, failed.attempts, coalesce(failed.last_error, 'no answer'));
    INSERT INTO callback.alerts (account_id, campaign_id, callback_id, reason, notification_list)
    VALUES (campaign.account_id, campaign.id, failed.id, reason, campaign.notification_list)
    RETURNING id INTO alert_id;
    PERFORM pg_notify('pg_callback_alerts', json_build_object(
        'alert_id', alert_id, 'account_id', campaign.account_id, 'campaign_id', campaign.id,
        'callback_id', failed.id, 'reason', reason, 'notification_list', campaign.notification_list)::text);
    PERFORM callback._record('campaign.callbacks_disabled', campaign, NULL, campaign.account_id, NULL,
        callback._campaign_vars(campaign),
        jsonb_build_object(
            'alert_id', alert_id,
            'campaign_id', campaign.id,
            'list_id', campaign.list_id,
            'account_id', campaign.account_id,
            'name', campaign.name,
            'reason', reason,
            'callback_id', failed.id,
            'failed_event', failed.event,
            'failed_url', failed.url,
            'attempts', failed.attempts,
            'last_http_status', failed.last_http_status,
            'last_error', failed.last_error,
            'notification_list', to_jsonb(campaign.notification_list),
            'disabled_at', callback._iso(now())));
    RETURN alert_id;
END $$;

CREATE FUNCTION callback._campaign_exists(campaign_id bigint) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM FROM callback.campaigns c WHERE c.id = campaign_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % does not exist', campaign_id USING ERRCODE = 'undefined_object';
    END IF;
END $$;

CREATE FUNCTION callback.disable_campaign_callbacks(campaign_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM callback._campaign_exists(campaign_id);
    UPDATE callback.campaigns c SET callbacks_enabled = false WHERE c.id = disable_campaign_callbacks.campaign_id;
END $$;
COMMENT ON FUNCTION callback.disable_campaign_callbacks(bigint) IS
    'Holds the campaign''s callbacks: new ones are recorded as held and pending ones are held, until enabled again.';

CREATE FUNCTION callback.enable_campaign_callbacks(campaign_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM callback._campaign_exists(campaign_id);
    UPDATE callback.campaigns c SET callbacks_enabled = true WHERE c.id = enable_campaign_callbacks.campaign_id;
END $$;
COMMENT ON FUNCTION callback.enable_campaign_callbacks(bigint) IS
    'Enables the campaign''s callbacks again and releases every held one, due at once (in event order for each target).';

-- Tenants may not change what the workers own (state, attempts, lease, due time) themselves:
-- replay, retry_now and replay_all do it for them, as the extension's owner, on the callbacks
-- of the accounts the calling role acts for (callback._accounts_of, sql/tenants.sql). The
-- public functions pass the caller's role to the internal ones that do the work.
-- It returns the callback without its credentials, which tenants may not read.
CREATE FUNCTION callback._replay(callback_id bigint, acting name)
RETURNS TABLE (id bigint, webhook_id uuid, state callback.callback_state, attempts int, due_at timestamptz,
               finished_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    accounts bigint[] := callback._accounts_of(acting);
BEGIN
    WITH gone AS MATERIALIZED (
        SELECT * FROM callback._reopen(ARRAY[_replay.callback_id], accounts)
    )
    INSERT INTO callback.callbacks_undone (id, account_id, campaign_id, target, state, endpoint, order_hash)
    SELECT r.id, r.account_id, r.campaign_id, r.target, 'pending', callback._endpoint(r.url),
           callback._order_hash(coalesce(r.order_key, callback._order_key(r.message_id, r.campaign_id, r.url)))
    FROM gone JOIN callback.requests r ON r.account_id = gone.account_id AND r.id = gone.id;
    IF NOT FOUND THEN
        PERFORM FROM callback.callbacks c
        WHERE c.id = _replay.callback_id AND (accounts IS NULL OR c.account_id = ANY (accounts));
        IF NOT FOUND THEN
            RAISE EXCEPTION 'callback % does not exist', callback_id USING ERRCODE = 'undefined_object';
        END IF;
        RAISE EXCEPTION 'callback % is not done yet', callback_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only failed or delivered callbacks can be replayed.';
    END IF;
    SELECT c.id, c.webhook_id, c.state, c.attempts, c.due_at, c.finished_at
    INTO id, webhook_id, state, attempts, due_at, finished_at
    FROM callback.callbacks c WHERE c.id = _replay.callback_id;
    PERFORM callback._wake_on_commit();
    RETURN NEXT;
END $$;

CREATE FUNCTION callback.replay(callback_id bigint)
RETURNS TABLE (id bigint, webhook_id uuid, state callback.callback_state, attempts int, due_at timestamptz,
               finished_at timestamptz)
LANGUAGE sql AS $$ SELECT * FROM callback._replay(callback_id, current_user) $$;
COMMENT ON FUNCTION callback.replay(bigint) IS
    'Sends a failed (or delivered) callback again from its first attempt, with the same webhook-id, URL and body.';

CREATE VIEW callback.history AS
SELECT d.id, d.callback_id, c.message_id, c.campaign_id, c.account_id, c.event, c.target, c.method, c.url,
       d.attempt, d.started_at, d.duration, d.http_status, d.response_excerpt, d.error, c.state,
       c.batch_size
FROM callback.deliveries d
JOIN callback.callbacks c ON c.id = d.callback_id
WHERE c.batch_size IS NULL
UNION ALL
-- A batch's attempts, once for each of its events.
SELECT d.id, d.callback_id, b.message_id, c.campaign_id, c.account_id, b.event, c.target, c.method, c.url,
       d.attempt, d.started_at, d.duration, d.http_status, d.response_excerpt, d.error, c.state,
       c.batch_size
FROM callback.batch_events b
JOIN callback.callbacks c ON c.id = b.callback_id
JOIN callback.deliveries d ON d.callback_id = c.id;
COMMENT ON VIEW callback.history IS 'Every HTTP attempt with its callback: when, how long, the status, an excerpt of the answer, the error. The attempts of a batch (batch_size events in one request) appear once for each of its events, with that event''s type and message.';

CREATE FUNCTION callback.message_history(message_id bigint) RETURNS SETOF callback.history
LANGUAGE sql STABLE AS $$
    SELECT * FROM callback.history h WHERE h.message_id = message_history.message_id ORDER BY h.started_at, h.id
$$;
COMMENT ON FUNCTION callback.message_history(bigint) IS 'Every HTTP attempt for the callbacks of one message, oldest first.';

CREATE FUNCTION callback.campaign_history(campaign_id bigint) RETURNS SETOF callback.history
LANGUAGE sql STABLE AS $$
    SELECT * FROM callback.history h WHERE h.campaign_id = campaign_history.campaign_id ORDER BY h.started_at, h.id
$$;
COMMENT ON FUNCTION callback.campaign_history(bigint) IS 'Every HTTP attempt for the callbacks of one campaign and its messages, oldest first.';

CREATE FUNCTION callback.campaign_report(campaign_id bigint)
RETURNS TABLE (message_id bigint, member_id bigint, destination text, channel callback.channel, status text,
               final bool, attempts bigint, attempt_ids bigint[], error_code text, error_message text,
               callback_data text, updated_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM callback._campaign_exists(campaign_id);
    RETURN QUERY
    SELECT m.id, m.member_id, m.destination, m.channel, m.status, s.final,
           count(a.id), coalesce(array_agg(a.id ORDER BY a.attempt_no) FILTER (WHERE a.id IS NOT NULL), '{}'),
           m.error_code, m.error_message, m.callback_data, m.updated_at
    FROM callback.messages m
    JOIN callback.statuses s ON s.status = m.status
    LEFT JOIN callback.attempts a ON a.message_id = m.id
    WHERE m.campaign_id = campaign_report.campaign_id
    GROUP BY m.id, s.final
    ORDER BY m.id;
END $$;
COMMENT ON FUNCTION callback.campaign_report(bigint) IS 'Every recipient''s outcome in a campaign: status, attempts, error (seed 003).';

-- One CSV field: quoted when it holds a comma, quote or line break (RFC 4180).
CREATE FUNCTION callback._csv(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value IS NULL THEN ''
            WHEN value ~ '[",\r\n]' THEN '"' || replace(value, '"', '""') || '"'
            ELSE value END;

-- A campaign's report as CSV lines (with their CRLF), the header first: streamed by the
-- workers to object storage (sql/reports.sql), gathered by callback.campaign_report_csv().
CREATE FUNCTION callback._campaign_report_lines(campaign_id bigint) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT line FROM (
        SELECT 0 AS n, 'message_id,member_id,destination,channel,status,final,attempts,attempt_ids,error_code,error_message,callback_data,updated_at'
                       || E'\r\n' AS line
        UNION ALL
        SELECT r.message_id,
               concat_ws(',', r.message_id, callback._csv(r.member_id::text), callback._csv(r.destination), r.channel,
                         callback._csv(r.status), r.final, r.attempts, array_to_string(r.attempt_ids, ' '),
                         callback._csv(r.error_code), callback._csv(r.error_message), callback._csv(r.callback_data),
                         callback._iso(r.updated_at)) || E'\r\n'
        FROM callback.campaign_report(_campaign_report_lines.campaign_id) r
    ) lines
    ORDER BY n
$$;

CREATE FUNCTION callback.campaign_report_csv(campaign_id bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(l.line, '' ORDER BY l.n)
    FROM callback._campaign_report_lines(campaign_report_csv.campaign_id) WITH ORDINALITY AS l(line, n)
$$;
COMMENT ON FUNCTION callback.campaign_report_csv(bigint) IS 'callback.campaign_report() as CSV with a header line, for export (seed 003).';

CREATE FUNCTION callback.purge(older_than interval, max_rows bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    purged bigint;
BEGIN
    IF older_than IS NULL OR older_than < '0' THEN
        RAISE EXCEPTION 'older_than must be zero or more, not %', coalesce(older_than::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- What says a chosen callback was delivered is deleted first, and only what still says so
    -- (a replay may have reopened it meanwhile): then the rest of it.
    WITH chosen AS (
        SELECT o.id FROM callback.callbacks_done o
        WHERE o.state = 'delivered' AND o.finished_at < now() - older_than
        ORDER BY o.id
        LIMIT max_rows
    ), ended AS (
        DELETE FROM callback.callbacks_ended e USING chosen
        WHERE e.id = chosen.id AND e.state = 'delivered'
        RETURNING e.account_id, e.id
    ), attempted AS (
        DELETE FROM callback.deliveries d USING chosen
        WHERE d.callback_id = chosen.id AND d.outcome = 'delivered'
        RETURNING d.account_id, d.callback_id AS id
    ), gone AS (
        SELECT * FROM ended UNION ALL SELECT * FROM attempted
    ), requests AS (
        DELETE FROM callback.requests r USING gone WHERE r.account_id = gone.account_id AND r.id = gone.id
    ), history AS (
        DELETE FROM callback.deliveries d USING gone WHERE d.callback_id = gone.id AND d.outcome IS NULL
    ), batched AS (
        DELETE FROM callback.batch_events b USING gone WHERE b.callback_id = gone.id
    )
    SELECT count(*) INTO purged FROM gone;
    RETURN purged;
END $$;
COMMENT ON FUNCTION callback.purge(interval, bigint) IS
    'Deletes delivered callbacks finished more than older_than ago, with their history (oldest first, at most max_rows; NULL: all). Failed callbacks are kept for replay. Returns how many callbacks were deleted. Workers call it with pg_callback.retention.';

-- CREATE EXTENSION wakes the workers, which wait quietly until the extension exists.
SELECT callback._wake_on_commit();
