-- Claims up to $1 due callbacks for the worker with pid $2, skipping rows another worker holds
-- (SKIP LOCKED, or a live lease) and rows of the endpoints in $5, which have as many callbacks
-- with this worker as it can send soon (pg_callback_core::dispatch).
-- A callback behind an earlier one with the same order key is 'waiting', not pending, so order
-- needs no check here. The lease covers $3 rounds of the longest timeout, plus a minute; $4 is
-- pg_callback.default_timeout in seconds, for policies that set no timeout.
--
-- The scan starts after ($6, $7), a due time (Unix seconds) and id, mostly those of the last
-- callback this worker claimed ((0, 0): from the start; pg_callback_core::scan): the callbacks
-- before it are leased, and skipping them row by row made each claim cost more the more were
-- on the wire. It may end at ($9, $10), where sql/worker/claim_window.sql said (else infinity).
--
-- It updates the queue rows it claims, finding them by id: the worker keeps its plan
-- (src/deliver/claim.rs), and joining the claimed rows back was planned as a scan of every
-- pending row per claimed one when the statistics said the queue was empty (28 s for a batch
-- of a backlog of 570,000). Their requests are read by id.
--
-- The callbacks $8 were leased to this worker as it rendered them, earlier in this
-- transaction (sql/render/insert_batch.sql): returned with those claimed, not written again.
WITH due AS (
    SELECT c.id
    FROM callback.callbacks_undone c
    WHERE c.state = 'pending'
      AND c.due_at <= now()
      AND (c.leased_until IS NULL OR c.leased_until < now())
      AND (cardinality($5::text[]) = 0 OR c.endpoint <> ALL ($5::text[]))
      AND (c.due_at, c.id) > (to_timestamp($6), $7::bigint)
      AND (c.due_at, c.id) <= (to_timestamp($9), $10::bigint)
    ORDER BY c.due_at, c.id
    LIMIT $1
    FOR UPDATE OF c SKIP LOCKED
), lease AS (
    -- sql/render/insert_batch.sql leases for as long.
    SELECT $3 * (SELECT greatest(max(timeout), make_interval(secs => $4)) FROM callback.retry_policies)
           + interval '60 seconds' AS length
), claimed AS (
    UPDATE callback.callbacks_undone c
    SET leased_until = now() + (SELECT length FROM lease),
        leased_by = $2,
        attempts = c.attempts + 1
    WHERE c.id = ANY (ARRAY(SELECT id FROM due))
    RETURNING c.account_id, c.id, c.attempts, c.leased_until, c.due_at, c.endpoint
), leased AS (
    SELECT *, false AS rendered FROM claimed
    UNION ALL
    SELECT c.account_id, c.id, c.attempts, c.leased_until, c.due_at, c.endpoint, true
    FROM callback.callbacks_undone c WHERE c.id = ANY ($8::bigint[])
)
SELECT c.id,
       r.account_id,
       r.webhook_id::text AS webhook_id,
       r.method = 'POST' AS post,
       r.url,
       c.endpoint,
       callback._headers_sent(r.headers, r.body IS NOT NULL)::text AS headers,
       callback._body(r.body) AS body,
       r.auth_header,
       r.signing_secret,
       -- The secrets in their rotation overlap with it (sql/secrets.sql): signed with them too.
       CASE WHEN r.signing_secret IS NOT NULL THEN
           (SELECT array_agg(o.other ORDER BY o.until DESC) FROM callback.signing_secret_overlaps o
            WHERE o.account_id = r.account_id AND o.secret = r.signing_secret AND o.until > now())
       END AS other_secrets,
       -- The client certificate it presents and its version (sql/certificates.sql), looked
       -- for only when any is set.
       CASE WHEN (SELECT true FROM callback.client_certificates LIMIT 1) THEN
           callback._client_certificate(r.account_id, r.campaign_id, r.target)
       END AS client_certificate,
       c.attempts,
       r.retry_policy,
       extract(epoch FROM c.leased_until - now())::float8 AS lease_seconds,
       extract(epoch FROM c.due_at)::float8 AS due,
       c.rendered
FROM leased c
JOIN callback.requests r ON r.account_id = c.account_id AND r.id = c.id
