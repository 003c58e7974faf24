-- Releases the alert emails and campaign reports leased by workers that no longer run, as
-- recover.sql does for callbacks.
WITH running AS (
    SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_callback worker'
), emails AS (
    UPDATE callback.alert_emails
    SET leased_until = NULL, leased_by = NULL
    WHERE state = 'pending' AND leased_until IS NOT NULL
      AND leased_by IS DISTINCT FROM pg_backend_pid() AND leased_by NOT IN (SELECT pid FROM running)
    RETURNING 1
), reports AS (
    UPDATE callback.campaign_reports
    SET leased_until = NULL, leased_by = NULL
    WHERE state = 'pending' AND leased_until IS NOT NULL
      AND leased_by IS DISTINCT FROM pg_backend_pid() AND leased_by NOT IN (SELECT pid FROM running)
    RETURNING 1
)
SELECT (SELECT count(*) FROM emails) + (SELECT count(*) FROM reports)
