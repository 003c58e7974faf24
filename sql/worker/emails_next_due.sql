-- When the next pending alert email is due (or its lease ends), in Unix milliseconds; NULL for none.
SELECT extract(epoch FROM min(greatest(e.due_at, e.leased_until)))::float8 * 1000
FROM callback.alert_emails e
WHERE e.state = 'pending'
