-- Claims up to $1 due callbacks for the worker with pid $2, skipping rows another worker holds
-- (SKIP LOCKED, or a live lease) and rows behind an earlier undelivered callback with the same
-- order key. The lease covers $3 rounds of the longest timeout, plus a minute; $4 is
-- pg_callback.default_timeout in seconds, for policies that set no timeout.
WITH due AS (
    SELECT c.id
    FROM callback.callbacks c
    WHERE c.state = 'pending'
      AND c.due_at <= now()
      AND (c.leased_until IS NULL OR c.leased_until < now())
      AND NOT EXISTS (
          SELECT FROM callback.callbacks earlier
          WHERE earlier.order_key = c.order_key AND earlier.id < c.id AND earlier.state IN ('pending', 'held'))
    ORDER BY c.due_at, c.id
    LIMIT $1
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE callback.callbacks c
SET leased_until = now() + $3 * (SELECT greatest(max(timeout), make_interval(secs => $4)) FROM callback.retry_policies)
                   + interval '60 seconds',
    leased_by = $2,
    attempts = c.attempts + 1
FROM due, callback.retry_policies p
WHERE c.id = due.id AND p.name = c.retry_policy
RETURNING c.id,
          c.webhook_id::text AS webhook_id,
          c.method = 'POST' AS post,
          c.url,
          c.headers::text AS headers,
          c.body,
          c.auth_header,
          c.signing_secret,
          c.attempts,
          p.kind::text AS kind,
          p.max_attempts,
          extract(epoch FROM p.step)::float8 AS step,
          extract(epoch FROM p.cap)::float8 AS cap,
          p.jitter::float8 AS jitter,
          ARRAY(SELECT extract(epoch FROM i)::float8 FROM unnest(p.intervals) i) AS intervals,
          coalesce(extract(epoch FROM p.timeout)::float8, $4) AS timeout,
          p.success_codes = '200' AS exactly_200
