-- One event, whose callbacks a worker renders once its transaction commits
-- (pg_callback.recording = deferred). $1 is NULL for a message's status change.
INSERT INTO callback.events (
    event, account_id, campaign_id, message_id, list_id, member_id, batch_id, channel, destination,
    status, previous_status, error_code, error_message, callback_data, notify_url, notify_format,
    created_at, status_at, intermediate_reports, has_attempts, vars, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
