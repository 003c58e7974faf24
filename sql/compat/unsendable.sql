-- Frozen: sql/render/unsendable.sql as it was before the callbacks table was split in three
-- (sql/queue.sql), for a schema of 0.2.0 or older until `ALTER EXTENSION pg_callback UPDATE`
-- (src/pg/spi.rs, split_callbacks).
--
-- A callback that could not be made when its event was rendered after commit (its URL could not
-- be filled): recorded failed, with why, where the history shows it.
INSERT INTO callback.callbacks (
    event, account_id, campaign_id, message_id, target, subscription_id, url, method, retry_policy,
    order_key, state, finished_at, last_error, webhook_id)
VALUES (
    $1::callback.event_type, $2, $3, $4, $5::callback.target_kind, $6, $7, $8::callback.http_method, $9,
    $10, 'failed', now(), $11, $12)
