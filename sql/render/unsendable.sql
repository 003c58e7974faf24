-- A callback that could not be made when its event was rendered after commit (its URL could not
-- be filled): its request, and recorded failed, with why, where the history shows it.
WITH request AS (
    INSERT INTO callback.requests (
        event, account_id, campaign_id, message_id, target, subscription_id, url, method, retry_policy,
        order_key, webhook_id)
    VALUES (
        $1::callback.event_type, $2, $3, $4, $5::callback.target_kind, $6, $7,
        $8::callback.http_method, $9, nullif($10, callback._order_key($4, $3, $7)), $12)
    RETURNING id, account_id
)
INSERT INTO callback.callbacks_ended (id, account_id, state, attempts, last_error)
SELECT id, account_id, 'failed', 0, $11 FROM request
