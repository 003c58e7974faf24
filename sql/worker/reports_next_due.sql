-- When the next pending campaign report is due (or its lease ends), in Unix milliseconds; NULL
-- for none.
SELECT extract(epoch FROM min(greatest(r.due_at, r.leased_until)))::float8 * 1000
FROM callback.campaign_reports r
WHERE r.state = 'pending'
