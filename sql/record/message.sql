-- What a message's status change needs beside its row ($1): whether its status is final and
-- what it fires, whether the previous status ($2, NULL on insert) was final, and what its
-- targets and variables come from (callback._target_settings); enums as text, timestamps in
-- ISO 8601 UTC.
SELECT m.id, m.account_id, m.campaign_id, m.member_id, m.batch_id, m.channel::text AS channel,
       m.destination, m.status, m.error_code, m.error_message, m.notify_url,
       m.notify_content_type::text AS notify_format, m.intermediate_reports, m.callback_data,
       callback._iso(m.created_at) AS created_at, callback._iso(m.updated_at) AS status_at,
       s.final, s.fires::text AS fires, coalesce(o.final, false) AS was_final, t.*
FROM (SELECT ($1::callback.messages).*) m
JOIN callback.statuses s ON s.status = m.status
LEFT JOIN callback.statuses o ON o.status = $2
CROSS JOIN callback._target_settings(m.campaign_id, m.member_id, m.account_id) t
