-- The fields of a message ($1, its new row) that recording needs, enums as text and
-- timestamps in ISO 8601 UTC, with its member's list and attributes.
SELECT m.id, m.account_id, m.campaign_id, m.member_id, m.batch_id, m.channel::text AS channel,
       m.destination, m.status, m.error_code, m.error_message, m.notify_url,
       m.notify_content_type::text AS notify_format, m.intermediate_reports, m.callback_data,
       callback._iso(m.created_at) AS created_at, callback._iso(m.updated_at) AS status_at,
       member.list_id AS member_list_id, nullif(member.attributes, '{}')::text AS member_attributes
FROM (SELECT ($1::callback.messages).*) m
LEFT JOIN callback.members member ON member.id = m.member_id
