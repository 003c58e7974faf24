-- Makes callback $2, just claimed, the probe of down endpoint $1, leased for $3 seconds, when a
-- probe is due and none is under way. The next probe may then go one interval later (a failed
-- probe sets it again from when it failed); the caller parks the endpoint's other waiting
-- callbacks until then (park.sql). Returns that time (Unix seconds) when $2 is the probe; no
-- row otherwise.
UPDATE callback.endpoints e
SET probe_callback_id = $2,
    probe_until = now() + make_interval(secs => $3),
    next_probe_at = now() + e.probe_interval
WHERE e.endpoint = $1 AND e.state = 'down' AND e.next_probe_at <= now()
  AND (e.probe_until IS NULL OR e.probe_until < now())
RETURNING extract(epoch FROM e.next_probe_at)::float8 AS next_probe
