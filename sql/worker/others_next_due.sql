-- When the next pending alert email or campaign report is due (or its lease ends), or the next
-- batch must go (its first event's max_wait over), in Unix milliseconds; NULL for none.
-- Beside next_due.sql, for schemas that have them (0.3.0).
SELECT extract(epoch FROM least(
    (SELECT min(greatest(e.due_at, e.leased_until)) FROM callback.alert_emails e WHERE e.state = 'pending'),
    (SELECT min(greatest(r.due_at, r.leased_until)) FROM callback.campaign_reports r WHERE r.state = 'pending'),
    (SELECT min(b.send_by) FROM callback.batch_events b WHERE b.callback_id IS NULL)
))::float8 * 1000
