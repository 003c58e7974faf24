-- Leases the campaign report due first (sql/reports.sql) for $1 seconds, counting an attempt.
UPDATE callback.campaign_reports r
SET leased_until = now() + make_interval(secs => $1), leased_by = pg_backend_pid(), attempts = r.attempts + 1
FROM (SELECT account_id, campaign_id
      FROM callback.campaign_reports
      WHERE state = 'pending' AND due_at <= now() AND (leased_until IS NULL OR leased_until < now())
      ORDER BY due_at
      LIMIT 1
      FOR UPDATE SKIP LOCKED) due
WHERE r.account_id = due.account_id AND r.campaign_id = due.campaign_id
RETURNING r.account_id, r.campaign_id, r.attempts
