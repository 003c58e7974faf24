-- Releases the leases of workers that no longer run (killed, crashed, or gone with a restart),
-- so their callbacks are sent again at once instead of when the lease expires.
UPDATE callback.callbacks_undone
SET leased_until = NULL, leased_by = NULL
WHERE leased_until IS NOT NULL
  AND leased_by IS DISTINCT FROM pg_backend_pid()
  AND leased_by NOT IN (SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_callback worker')
