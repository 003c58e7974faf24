-- Claims up to $1 due callbacks for the worker with pid $2, skipping rows another worker holds
-- (SKIP LOCKED, or a live lease). A callback behind an earlier one with the same order key is
-- 'waiting', not pending, so order needs no check here. The lease covers $3 rounds of the
-- longest timeout, plus a minute; $4 is pg_callback.default_timeout in seconds, for policies
-- that set no timeout.
WITH due AS (
    SELECT c.id
    FROM callback.callbacks c
    WHERE c.state = 'pending'
      AND c.due_at <= now()
      AND (c.leased_until IS NULL OR c.leased_until < now())
    ORDER BY c.due_at, c.id
    LIMIT $1
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE callback.callbacks c
SET leased_until = now() + $3 * (SELECT greatest(max(timeout), make_interval(secs => $4)) FROM callback.retry_policies)
                   + interval '60 seconds',
    leased_by = $2,
    attempts = c.attempts + 1
FROM due
WHERE c.id = due.id AND c.state = 'pending'
RETURNING c.id,
          c.webhook_id::text AS webhook_id,
          c.method = 'POST' AS post,
          c.url,
          c.headers::text AS headers,
          c.body,
          c.auth_header,
          c.signing_secret,
          c.attempts,
          c.retry_policy
