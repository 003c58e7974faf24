-- Claims up to $1 due callbacks for the worker with pid $2, skipping rows another worker holds
-- (SKIP LOCKED, or a live lease). A callback behind an earlier one with the same order key is
-- 'waiting', not pending, so order needs no check here. The lease covers $3 rounds of the
-- longest timeout, plus a minute; $4 is pg_callback.default_timeout in seconds, for policies
-- that set no timeout.
--
-- Fair to every host (src/dispatch.rs): hosts in $5 have as many callbacks with this worker as
-- they can take and are skipped; of hosts $6 it takes at most $7 each, of any other at most $8.
-- A host is the URL's lowercased authority. The scan stops after 4 x $1 due callbacks.
WITH candidates AS (
    SELECT c.id, c.due_at, lower(substring(c.url FROM '://([^/?#]*)')) AS host
    FROM callback.callbacks c
    WHERE c.state = 'pending'
      AND c.due_at <= now()
      AND (c.leased_until IS NULL OR c.leased_until < now())
      AND lower(substring(c.url FROM '://([^/?#]*)')) <> ALL ($5::text[])
    ORDER BY c.due_at, c.id
    LIMIT 4 * $1
), capped AS (
    SELECT ranked.id
    FROM (SELECT c.*, row_number() OVER (PARTITION BY c.host ORDER BY c.due_at, c.id) AS n FROM candidates c) ranked
    LEFT JOIN unnest($6::text[], $7::int[]) AS room (host, room) ON room.host = ranked.host
    WHERE ranked.n <= coalesce(room.room, $8)
    ORDER BY ranked.due_at, ranked.id
    LIMIT $1
), due AS (
    SELECT c.id
    FROM callback.callbacks c
    WHERE c.id IN (SELECT id FROM capped)
      AND c.state = 'pending'
      AND (c.leased_until IS NULL OR c.leased_until < now())
    FOR UPDATE OF c SKIP LOCKED
), lease AS (
    SELECT $3 * (SELECT greatest(max(timeout), make_interval(secs => $4)) FROM callback.retry_policies)
           + interval '60 seconds' AS length
)
UPDATE callback.callbacks c
SET leased_until = now() + (SELECT length FROM lease),
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
          c.retry_policy,
          extract(epoch FROM (SELECT length FROM lease))::float8 AS lease_seconds
