-- The events waiting for batch $1, in the order they happened, with what they are sent with
-- (as text too: `template`, which events sharing a batch have in common).
SELECT b.id, b.account_id, b.event::text, b.campaign_id, b.message_id, b.send_by <= now() AS overdue,
       b.max_count, b.max_bytes, b.format::text, b.target::text, b.subscription_id, b.url, b.method::text,
       b.headers::text, b.auth_header, b.signing_secret, b.retry_policy, b.envelope,
       concat_ws(' ', b.format, b.method, b.retry_policy, md5(concat_ws(' ', b.url, b.headers::text, b.auth_header, b.signing_secret))) AS template
FROM callback.batch_events b
WHERE b.batch_key = $1 AND b.callback_id IS NULL
ORDER BY b.id
