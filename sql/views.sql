-- What an operator looks at from psql: the queue per endpoint, each endpoint's health, the
-- workers, each campaign's deliveries; and what they do about it: send a callback now, replay
-- many. Views run with the caller's rights, so a tenant sees its own account's rows.

-- Each callback's endpoint (scheme, host and port) is computed once, when it is rendered
-- (callback._endpoint, in Rust); the workers limit requests per endpoint and these views group
-- by it.

CREATE VIEW callback.queue WITH (security_invoker = true) AS
SELECT c.endpoint,
       count(*) AS depth,
       count(*) FILTER (WHERE c.state = 'pending' AND c.due_at <= now() AND c.leased_until IS NULL) AS due,
       count(*) FILTER (WHERE c.leased_until > now()) AS in_flight,
       count(*) FILTER (WHERE c.state = 'pending' AND c.due_at > now()) AS retrying,
       count(*) FILTER (WHERE c.state = 'waiting') AS waiting,
       count(*) FILTER (WHERE c.state = 'held') AS held,
       coalesce(max(now() - c.due_at) FILTER (WHERE c.state = 'pending' AND c.due_at <= now()), '0') AS lag,
       min(r.recorded_at) AS oldest_recorded_at
FROM callback.callbacks_undone c
JOIN callback.requests r ON r.account_id = c.account_id AND r.id = c.id
GROUP BY 1;
COMMENT ON VIEW callback.queue IS 'Callbacks not done yet, per endpoint (scheme, host and port): how many, due now, in flight, waiting for a retry, waiting behind an earlier one, held; lag: how long the longest-due callback has been due.';

CREATE VIEW callback.endpoint_health WITH (security_invoker = true) AS
WITH attempts AS (
    SELECT callback._endpoint(c.url) AS endpoint, d.started_at, d.error IS NULL AS ok, d.http_status, d.error
    FROM callback.deliveries d
    JOIN callback.requests c ON c.id = d.callback_id
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
       max(a.started_at) AS last_attempt_at,
       coalesce(e.state, 'up') AS state,
       e.since AS state_since,
       e.next_probe_at
FROM attempts a
JOIN last_success s USING (endpoint)
LEFT JOIN callback._endpoint_states() e USING (endpoint)
GROUP BY a.endpoint, s.at, e.state, e.since, e.next_probe_at;
COMMENT ON VIEW callback.endpoint_health IS 'Every endpoint (scheme, host and port) in the history kept: attempts and success rate, overall and in the last hour; failures since the last success; the last success, failure and error; up or down (sql/health.sql) since when, and when a down one is probed next.';

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
       (SELECT count(*) FROM callback.alerts a WHERE a.campaign_id = c.id) AS alerts,
       coalesce(sum(coalesce(cb.batch_size, 1)) FILTER (WHERE cb.id IS NOT NULL), 0) AS events,
       coalesce(sum(coalesce(cb.batch_size, 1)) FILTER (WHERE cb.state = 'delivered'), 0) AS events_delivered
FROM callback.campaigns c
LEFT JOIN callback.callbacks cb ON cb.campaign_id = c.id
GROUP BY c.id;
COMMENT ON VIEW callback.campaign_summary IS 'Each campaign''s callbacks: how many, delivered, failed, still to send, held; attempts made, the last delivery, alerts raised; the events they carry (a batch carries several), and those delivered.';

-- Run as the extension's owner for the accounts the caller acts for (sql/delivery.sql says why).
CREATE FUNCTION callback._retry_now(callback_id bigint, acting name) RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    accounts bigint[] := callback._accounts_of(acting);
    current_state callback.callback_state;
BEGIN
    UPDATE callback.callbacks_undone c SET due_at = now()
    WHERE c.id = _retry_now.callback_id AND c.state = 'pending' AND c.leased_until IS NULL
      AND (accounts IS NULL OR c.account_id = ANY (accounts));
    IF FOUND THEN
        PERFORM callback._wake_on_commit();
        RETURN now();
    END IF;
    SELECT c.state INTO current_state FROM callback.callbacks c
    WHERE c.id = _retry_now.callback_id AND (accounts IS NULL OR c.account_id = ANY (accounts));
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

CREATE FUNCTION callback.retry_now(callback_id bigint) RETURNS timestamptz
LANGUAGE sql AS $$ SELECT callback._retry_now(callback_id, current_user) $$;
COMMENT ON FUNCTION callback.retry_now(bigint) IS
    'Makes a callback waiting for its next attempt due now (e.g. once its endpoint is fixed); returns when.';

-- A callback not yet sent for good is given up: failed, with who canceled it as its error; the
-- next one of its order key that waited behind it goes. Not one on the wire (its worker
-- writes how it went) nor one done (replay sends that again).
CREATE FUNCTION callback._cancel(callback_id bigint, acting name) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    accounts bigint[] := callback._accounts_of(acting);
    canceled record;
    current_state callback.callback_state;
BEGIN
    WITH gone AS (
        DELETE FROM callback.callbacks_undone c
        WHERE c.id = _cancel.callback_id AND (accounts IS NULL OR c.account_id = ANY (accounts))
          AND (c.leased_until IS NULL OR c.leased_until < now())
        RETURNING c.id, c.account_id, c.attempts, c.last_http_status, c.order_hash
    ), done AS (
        INSERT INTO callback.callbacks_ended (id, account_id, state, attempts, last_http_status, last_error)
        SELECT g.id, g.account_id, 'failed', g.attempts, g.last_http_status, format('canceled by %s', acting)
        FROM gone g
    )
    SELECT * INTO canceled FROM gone;
    IF FOUND THEN
        UPDATE callback.callbacks_undone w SET state = 'pending', due_at = now()
        WHERE w.id = (SELECT min(n.id) FROM callback.callbacks_undone n
                      WHERE n.order_hash = canceled.order_hash AND n.state = 'waiting')
          AND NOT EXISTS (SELECT FROM callback.callbacks_undone b
                          WHERE b.order_hash = canceled.order_hash AND b.state IN ('pending', 'held'));
        PERFORM callback._wake_on_commit();
        RETURN;
    END IF;
    SELECT c.state INTO current_state FROM callback.callbacks c
    WHERE c.id = _cancel.callback_id AND (accounts IS NULL OR c.account_id = ANY (accounts));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'callback % does not exist', callback_id USING ERRCODE = 'undefined_object';
    END IF;
    RAISE EXCEPTION 'callback % is % and cannot be canceled', callback_id,
        CASE WHEN current_state = 'pending' THEN 'being sent' ELSE current_state::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = CASE WHEN current_state = 'pending' THEN 'A worker is sending it now; its result is written when it answers.'
                          ELSE 'It is done already.' END;
END $$;

CREATE FUNCTION callback.cancel(callback_id bigint) RETURNS void
LANGUAGE sql AS $$ SELECT callback._cancel(callback_id, current_user) $$;
COMMENT ON FUNCTION callback.cancel(bigint) IS
    'Gives up a callback not sent yet (waiting, pending, held): failed, with who canceled it; the next one of its message and URL goes.';

-- The first replayed callback of each order key is due at once unless one of its key is not
-- done yet; the others wait their turn, as they did the first time.
CREATE FUNCTION callback._replay_all(campaign_id bigint, finished_from timestamptz, finished_to timestamptz,
                                     state callback.callback_state, acting name)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET enable_nestloop = off AS $$
DECLARE
    accounts bigint[] := callback._accounts_of(acting);
    replayed bigint;
BEGIN
    IF _replay_all.state IS NULL OR _replay_all.state NOT IN ('failed', 'delivered') THEN
        RAISE EXCEPTION 'only failed or delivered callbacks can be replayed, not %', coalesce(_replay_all.state::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF _replay_all.campaign_id IS NOT NULL THEN
        PERFORM FROM callback.campaigns c
        WHERE c.id = _replay_all.campaign_id AND (accounts IS NULL OR c.account_id = ANY (accounts));
        IF NOT FOUND THEN
            RAISE EXCEPTION 'campaign % does not exist', campaign_id USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
    WITH chosen AS (
        SELECT d.id, r.account_id, r.campaign_id, r.target, callback._endpoint(r.url) AS endpoint,
               callback._order_hash(k.order_key) AS order_hash,
               min(d.id) OVER (PARTITION BY k.order_key) AS first
        FROM callback.callbacks_done d
        JOIN callback.requests r ON r.account_id = d.account_id AND r.id = d.id,
             LATERAL (SELECT coalesce(r.order_key, callback._order_key(r.message_id, r.campaign_id, r.url)) AS order_key) k
        WHERE d.state = _replay_all.state
          AND (accounts IS NULL OR d.account_id = ANY (accounts))
          AND (_replay_all.campaign_id IS NULL OR r.campaign_id = _replay_all.campaign_id)
          AND (_replay_all.finished_from IS NULL OR d.finished_at >= _replay_all.finished_from)
          AND (_replay_all.finished_to IS NULL OR d.finished_at < _replay_all.finished_to)
    ), busy AS (
        SELECT DISTINCT u.order_hash FROM callback.callbacks_undone u JOIN chosen USING (order_hash)
    ), reopened AS MATERIALIZED (
        SELECT o.id FROM callback._reopen(ARRAY(SELECT id FROM chosen), accounts) o
    )
    INSERT INTO callback.callbacks_undone (id, account_id, campaign_id, target, state, endpoint, order_hash)
    SELECT chosen.id, chosen.account_id, chosen.campaign_id, chosen.target,
           CASE WHEN chosen.id = chosen.first AND busy.order_hash IS NULL THEN 'pending' ELSE 'waiting' END
               ::callback.callback_state,
           chosen.endpoint, chosen.order_hash
    FROM chosen JOIN reopened USING (id) LEFT JOIN busy USING (order_hash);
    GET DIAGNOSTICS replayed = ROW_COUNT;
    IF replayed > 0 THEN
        PERFORM callback._wake_on_commit();
    END IF;
    RETURN replayed;
END $$;

CREATE FUNCTION callback.replay_all(campaign_id bigint DEFAULT NULL, finished_from timestamptz DEFAULT NULL,
                                    finished_to timestamptz DEFAULT NULL, state callback.callback_state DEFAULT 'failed')
RETURNS bigint
LANGUAGE sql AS $$ SELECT callback._replay_all(campaign_id, finished_from, finished_to, state, current_user) $$;
COMMENT ON FUNCTION callback.replay_all(bigint, timestamptz, timestamptz, callback.callback_state) IS
    'Sends again every failed (or, with state => ''delivered'', delivered) callback of a campaign (NULL: all) finished in [finished_from, finished_to) (NULL: unbounded), in event order per target; returns how many.';
