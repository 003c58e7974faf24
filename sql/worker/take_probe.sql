-- Makes callback $2, just claimed, the probe of down endpoint $1, leased for $3 seconds, when a
-- probe is due and none is under way. The next probe may then go one interval later (a failed
-- probe sets it again from when it failed), and the endpoint's other waiting callbacks are
-- parked until then. Returns that time (Unix seconds) when $2 is the probe; no row otherwise.
-- Callbacks locked by another worker are left alone (a worker holding them may be waiting for
-- this endpoint's row): a claim gives them back to wait for the probe all the same.
WITH taken AS (
    UPDATE callback.endpoints e
    SET probe_callback_id = $2,
        probe_until = now() + make_interval(secs => $3),
        next_probe_at = now() + e.probe_interval
    WHERE e.endpoint = $1 AND e.state = 'down' AND e.next_probe_at <= now()
      AND (e.probe_until IS NULL OR e.probe_until < now())
    RETURNING e.next_probe_at
), waiting AS (
    SELECT c.id
    FROM callback.callbacks_undone c, taken
    WHERE c.endpoint = $1 AND c.state = 'pending' AND c.leased_until IS NULL AND c.due_at < taken.next_probe_at
    FOR UPDATE OF c SKIP LOCKED
), parked AS (
    UPDATE callback.callbacks_undone c
    SET due_at = taken.next_probe_at
    FROM taken, waiting
    WHERE c.id = waiting.id
)
SELECT extract(epoch FROM next_probe_at)::float8 AS next_probe FROM taken
