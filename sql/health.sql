-- Endpoint health (pg_callback_core::health): after pg_callback.endpoint_down_after consecutive
-- failures (no answer, or a 5xx) an endpoint is down. Its callbacks then wait ("parked": due
-- at its next probe) instead of each spending its own attempts; one at a time, the next
-- callback due is sent as a probe, pg_callback.endpoint_probe_interval after it went down,
-- the interval doubling after each failed probe up to pg_callback.endpoint_probe_max. A probe
-- is an attempt of its callback like any other (its policy counts it, and may fail it, disable
-- its campaign and raise the alert). The first answer brings the endpoint up, and its parked
-- callbacks are due at once, in order. The workers write this table (src/deliver/health.rs);
-- administrators can reset an endpoint.

CREATE TABLE callback.endpoints (
    endpoint text PRIMARY KEY,
    state text NOT NULL DEFAULT 'up' CONSTRAINT state_up_or_down CHECK (state IN ('up', 'down')),
    since timestamptz NOT NULL DEFAULT now(),
    failures int NOT NULL DEFAULT 0,
    last_error text,
    probe_interval interval,
    next_probe_at timestamptz,
    probe_callback_id bigint,
    probe_until timestamptz
);
COMMENT ON TABLE callback.endpoints IS 'What the workers know of each endpoint that has failed: up or down since when, failures since its last answer, the last error; down, when the next probe may go and the probe under way. Written by the workers; callback.reset_endpoint() brings one up.';
COMMENT ON COLUMN callback.endpoints.probe_callback_id IS 'The callback sent as the probe, until probe_until (its lease).';

-- The callbacks of an endpoint waiting for its probe go at once (those due later than it
-- keep their own time; those a worker holds locked are its to write); wakes the workers at
-- commit.
CREATE FUNCTION callback._unpark(endpoint text) RETURNS void
LANGUAGE sql AS $$
    UPDATE callback.callbacks_undone c SET due_at = now()
    FROM (SELECT u.id
          FROM callback.callbacks_undone u
          JOIN callback.endpoints e ON e.endpoint = u.endpoint
          WHERE e.endpoint = _unpark.endpoint AND u.state = 'pending' AND u.leased_until IS NULL
            AND u.due_at > now() AND u.due_at <= e.next_probe_at
          FOR UPDATE OF u SKIP LOCKED) w
    WHERE c.id = w.id;
    SELECT callback._wake_on_commit();
$$;

CREATE FUNCTION callback.reset_endpoint(endpoint text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM callback._unpark(endpoint);
    UPDATE callback.endpoints e
    SET state = 'up', since = CASE WHEN e.state = 'up' THEN e.since ELSE now() END, failures = 0,
        probe_interval = NULL, next_probe_at = NULL, probe_callback_id = NULL, probe_until = NULL
    WHERE e.endpoint = reset_endpoint.endpoint;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION callback.reset_endpoint(text) IS
    'Brings an endpoint (scheme, host and port, as callback.endpoint_health shows it) up: its failures forgotten, its waiting callbacks due at once. False when the workers know nothing of it.';

-- For callback.endpoint_health, which tenants read: every endpoint's state (the view shows
-- those of their own callbacks only).
CREATE FUNCTION callback._endpoint_states()
RETURNS TABLE (endpoint text, state text, since timestamptz, failures int, last_error text, next_probe_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.endpoint, e.state, e.since, e.failures, e.last_error, e.next_probe_at FROM callback.endpoints e
$$;
