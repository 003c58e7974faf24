-- The callbacks rendered from a batch of events (src/render/expand.rs), one array per
-- column, inserted with one statement (their requests and queue rows): insert.sql for many.
-- A callback waits behind an earlier one of its order key, in the queue already or earlier in
-- the batch ($17, which the caller works out: a window and its sorts here cost more to start
-- than the insert of a few rows), and is held while its campaign's callbacks are disabled
-- ($15). The rows are read in the arrays' order, a function scan's, so their ids follow their
-- events.
--
-- A worker rendering them leases those marked in $18 that are pending, as its claim would
-- (claim.sql), to send them without claiming them: its pid $19, for $20 rounds of the longest
-- timeout ($21: pg_callback.default_timeout in seconds) plus a minute. Returns whether any
-- is due now for whoever claims it, and the ids of those leased.
WITH lease AS (
    SELECT now() + $20 * (SELECT greatest(max(timeout), make_interval(secs => $21)) FROM callback.retry_policies)
           + interval '60 seconds' AS until
), r AS MATERIALIZED (
    -- Each row's id, endpoint, order hash and state worked out once, for its request and its
    -- queue row.
    SELECT nextval('callback.callbacks_id_seq') AS id, callback._endpoint(r.url) AS endpoint,
           h.order_hash, r.*,
           CASE WHEN r.held THEN 'held'
                WHEN r.behind THEN 'waiting'
                WHEN EXISTS (SELECT FROM callback.callbacks_undone c WHERE c.order_hash = h.order_hash) THEN 'waiting'
                ELSE 'pending' END::callback.callback_state AS state
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                $14::text[], $15::bool[], $16::uuid[], $17::bool[], $18::bool[])
         AS r(event, account_id, campaign_id, message_id, target, subscription_id,
              url, method, headers, body, auth_header, signing_secret, retry_policy,
              order_key, held, webhook_id, behind, lease),
         LATERAL (SELECT callback._order_hash(r.order_key) AS order_hash) h
), request AS (
    INSERT INTO callback.requests (
        id, event, account_id, campaign_id, message_id, target, subscription_id,
        url, method, headers, body, auth_header, signing_secret, retry_policy, order_key, webhook_id)
    SELECT r.id, r.event::callback.event_type, r.account_id, r.campaign_id, r.message_id, r.target::callback.target_kind,
           r.subscription_id, r.url, r.method::callback.http_method,
           callback._headers_kept(r.headers::jsonb, r.body IS NOT NULL), callback._packed_body(r.body), r.auth_header,
           r.signing_secret, r.retry_policy, nullif(r.order_key, callback._order_key(r.message_id, r.campaign_id, r.url)),
           r.webhook_id
    FROM r
), inserted AS (
    INSERT INTO callback.callbacks_undone (
        id, account_id, campaign_id, target, state, endpoint, order_hash, leased_by, leased_until, attempts)
    SELECT r.id, r.account_id, r.campaign_id, r.target::callback.target_kind, r.state, r.endpoint, r.order_hash,
           CASE WHEN r.lease AND r.state = 'pending' THEN $19 END,
           CASE WHEN r.lease AND r.state = 'pending' THEN (SELECT until FROM lease) END,
           CASE WHEN r.lease AND r.state = 'pending' THEN 1 ELSE 0 END
    FROM r
    RETURNING id, state, leased_by IS NOT NULL AS leased
)
SELECT coalesce(bool_or(state = 'pending' AND NOT leased), false),
       coalesce(array_agg(id) FILTER (WHERE leased), '{}')
FROM inserted
