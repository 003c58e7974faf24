-- One batch: a callback carrying the events $17 ($16 of them), which are linked to it and
-- cleared of what it now holds. Its order key ($14, its target, campaign and URL, and its
-- first event) is its own: a target's batches go side by side (an event behind an undone
-- batch is kept out of the next ones, src/render/batches.rs). Held while its campaign's
-- callbacks are disabled (read now: they may have been enabled since its events were
-- recorded). Returns whether it is due now.
WITH r AS MATERIALIZED (
    SELECT nextval('callback.callbacks_id_seq') AS id, callback._endpoint($7) AS endpoint,
           CASE WHEN $5 IN ('campaign', 'campaign_event', 'list')
                     AND EXISTS (SELECT FROM callback.campaigns c WHERE c.id = $3 AND NOT c.callbacks_enabled) THEN 'held'
                ELSE 'pending' END::callback.callback_state AS state
), request AS (
    INSERT INTO callback.requests (
        id, event, account_id, campaign_id, message_id, target, subscription_id,
        url, method, headers, body, auth_header, signing_secret, retry_policy, order_key, webhook_id,
        batch_size)
    SELECT r.id, $1::callback.event_type, $2, $3, $4, $5::callback.target_kind, $6,
           $7, $8::callback.http_method, callback._headers_kept($9::jsonb, $10 IS NOT NULL), callback._packed_body($10), $11, $12, $13, $14, $15, $16
    FROM r
), batch AS (
    INSERT INTO callback.callbacks_undone (id, account_id, campaign_id, target, state, endpoint, order_hash)
    SELECT r.id, $2, $3, $5::callback.target_kind, r.state, r.endpoint, callback._order_hash($14)
    FROM r
    RETURNING id, state
), linked AS (
    UPDATE callback.batch_events b
    SET callback_id = (SELECT id FROM batch), batch_key = NULL, send_by = NULL, max_count = NULL, max_bytes = NULL,
        format = NULL, target = NULL, subscription_id = NULL, url = NULL, method = NULL, headers = NULL,
        envelope = NULL, auth_header = NULL, signing_secret = NULL, retry_policy = NULL
    WHERE b.account_id = $2 AND b.id = ANY ($17)
)
SELECT state = 'pending' FROM batch
