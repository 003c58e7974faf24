-- The endpoints' states after a batch of results (pg_callback_core::health), with the error of
-- their last failure. $7 is what changed: down and probe_failed set when the next probe may
-- go, one interval from now; a change of state sets since.
UPDATE callback.endpoints e
SET state = CASE WHEN r.down THEN 'down' ELSE 'up' END,
    since = CASE WHEN r.down = (e.state = 'down') THEN e.since ELSE now() END,
    failures = r.failures,
    last_error = coalesce(r.error, e.last_error),
    probe_interval = CASE WHEN r.down THEN make_interval(secs => r.probe_interval) END,
    next_probe_at = CASE WHEN r.change IN ('down', 'probe_failed') THEN now() + make_interval(secs => r.probe_interval)
                         WHEN r.down THEN e.next_probe_at END,
    probe_callback_id = CASE WHEN r.down THEN r.probe END,
    probe_until = CASE WHEN r.down AND r.probe IS NOT NULL THEN e.probe_until END
FROM unnest($1::text[], $2::bool[], $3::int[], $4::float8[], $5::bigint[], $6::text[], $7::text[])
     AS r(endpoint, down, failures, probe_interval, probe, error, change)
WHERE e.endpoint = r.endpoint
