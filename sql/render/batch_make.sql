-- One batch: a callback carrying the events $17 ($16 of them), which are linked to it and
-- cleared of what it now holds. Its order key ($14, its target, campaign and URL, and its
-- first event) is its own: a target's batches go side by side (an event behind an undone
-- batch is kept out of the next ones, src/render/batches.rs). Held while its campaign's
-- callbacks are disabled (read now: they may have been enabled since its events were
-- recorded). Returns whether it is due now.
WITH batch AS (
    INSERT INTO callback.callbacks_undone (
        event, account_id, campaign_id, message_id, target, subscription_id,
        url, method, headers, body, auth_header, signing_secret, retry_policy, order_key, state, webhook_id,
        batch_size)
    VALUES (
        $1::callback.event_type, $2, $3, $4, $5::callback.target_kind, $6,
        $7, $8::callback.http_method, $9::jsonb, $10, $11, $12, $13, $14,
        CASE WHEN $5 IN ('campaign', 'campaign_event', 'list')
                  AND EXISTS (SELECT FROM callback.campaigns c WHERE c.id = $3 AND NOT c.callbacks_enabled) THEN 'held'
             ELSE 'pending' END::callback.callback_state,
        $15, $16)
    RETURNING id, state
), linked AS (
    UPDATE callback.batch_events b
    SET callback_id = (SELECT id FROM batch), batch_key = NULL, send_by = NULL, max_count = NULL, max_bytes = NULL,
        format = NULL, target = NULL, subscription_id = NULL, url = NULL, method = NULL, headers = NULL,
        envelope = NULL, auth_header = NULL, signing_secret = NULL, retry_policy = NULL
    WHERE b.account_id = $2 AND b.id = ANY ($17)
)
SELECT state = 'pending' FROM batch
