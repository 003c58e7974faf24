-- Leases up to $1 due alert emails (sql/emails.sql) for $2 seconds, counting an attempt, with
-- what their alert says: the campaign, and the callback that failed.
WITH due AS (
    SELECT e.account_id, e.id
    FROM callback.alert_emails e
    WHERE e.state = 'pending' AND e.due_at <= now() AND (e.leased_until IS NULL OR e.leased_until < now())
    ORDER BY e.due_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE callback.alert_emails e
    SET leased_until = now() + make_interval(secs => $2), leased_by = pg_backend_pid(), attempts = e.attempts + 1
    FROM due
    WHERE e.account_id = due.account_id AND e.id = due.id
    RETURNING e.account_id, e.id, e.alert_id, e.address, e.attempts
)
SELECT l.account_id, l.id, l.address, l.attempts, a.id AS alert_id, a.campaign_id, c.name AS campaign_name,
       callback._iso(a.raised_at) AS raised_at, a.callback_id, f.event::text AS event, f.url,
       f.attempts AS callback_attempts, f.last_http_status, f.last_error
FROM leased l
JOIN callback.alerts a ON a.id = l.alert_id
LEFT JOIN callback.campaigns c ON c.id = a.campaign_id
LEFT JOIN callback.callbacks f ON f.id = a.callback_id
