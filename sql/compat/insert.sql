-- Frozen: sql/render/insert.sql as it was before the callbacks table was split in three
-- (sql/queue.sql), for a schema of 0.2.0 or older until `ALTER EXTENSION pg_callback UPDATE`
-- (src/pg/spi.rs, split_callbacks).
--
-- One callback. It waits behind an earlier one with the same order key that is not done yet,
-- and is held while its campaign's callbacks are disabled ($15). Its webhook-id ($16) comes from
-- src/render/queue.rs. Returns whether it is due now.
INSERT INTO callback.callbacks_undone (
    event, account_id, campaign_id, message_id, target, subscription_id,
    url, method, headers, body, auth_header, signing_secret, retry_policy, order_key, state, webhook_id)
VALUES (
    $1::callback.event_type, $2, $3, $4, $5::callback.target_kind, $6,
    $7, $8::callback.http_method, $9::jsonb, $10, $11, $12, $13, $14,
    CASE WHEN $15 THEN 'held'
         WHEN EXISTS (SELECT FROM callback.callbacks_undone c
                      WHERE c.order_key = $14) THEN 'waiting'
         ELSE 'pending' END::callback.callback_state,
    $16)
RETURNING state = 'pending'
