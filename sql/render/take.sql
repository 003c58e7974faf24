-- Takes the oldest $1 events recorded for rendering later (their caller sorts them by id).
-- The caller holds the lock below, so no one else takes events meanwhile. It reads the
-- columns by position, in this order (Taken in src/render/expand.rs). A message's attempts
-- come with its status change, for message.final (what attempt_ids.sql reads otherwise, a
-- statement per event).
DELETE FROM callback.events e
WHERE e.id IN (SELECT id FROM callback.events ORDER BY id LIMIT $1)
RETURNING e.id, e.recorded_at, e.event, e.account_id, e.campaign_id, e.message_id, e.list_id, e.member_id,
          e.batch_id, e.channel, e.destination, e.status, e.previous_status, e.error_code, e.error_message,
          e.callback_data, e.notify_url, e.notify_format, e.created_at, e.status_at, e.intermediate_reports,
          e.has_attempts, e.vars, e.data,
          CASE WHEN e.event IS NULL AND e.has_attempts THEN
              (SELECT coalesce(array_agg(a.id ORDER BY a.attempt_no), '{}') FROM callback.attempts a
               WHERE a.message_id = e.message_id)
          END
