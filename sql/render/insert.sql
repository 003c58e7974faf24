-- One callback: its request and its queue row (sql/queue.sql). It waits behind an earlier one
-- with the same order key that is not done yet, and is held while its campaign's callbacks are
-- disabled ($15). Its webhook-id ($16) comes from src/render/queue.rs. Returns whether it is
-- due now.
WITH r AS MATERIALIZED (
    SELECT nextval('callback.callbacks_id_seq') AS id, callback._endpoint($7) AS endpoint, h.order_hash,
           CASE WHEN $15 THEN 'held'
                WHEN EXISTS (SELECT FROM callback.callbacks_undone c WHERE c.order_hash = h.order_hash) THEN 'waiting'
                ELSE 'pending' END::callback.callback_state AS state
    FROM (SELECT callback._order_hash($14) AS order_hash) h
), request AS (
    INSERT INTO callback.requests (
        id, event, account_id, campaign_id, message_id, target, subscription_id,
        url, method, headers, body, auth_header, signing_secret, retry_policy, order_key, webhook_id)
    SELECT r.id, $1::callback.event_type, $2, $3, $4, $5::callback.target_kind, $6,
           $7, $8::callback.http_method, callback._headers_kept($9::jsonb, $10 IS NOT NULL), callback._packed_body($10), $11, $12, $13,
           nullif($14, callback._order_key($4, $3, $7)), $16
    FROM r
)
INSERT INTO callback.callbacks_undone (id, account_id, campaign_id, target, state, endpoint, order_hash)
SELECT r.id, $2, $3, $5::callback.target_kind, r.state, r.endpoint, r.order_hash
FROM r
RETURNING state = 'pending'
