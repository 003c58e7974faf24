-- The waiting callbacks of down endpoints $1 wait for their next probe; those another worker
-- holds locked are left alone (sql/worker/take_probe.sql says why).
UPDATE callback.callbacks_undone c
SET due_at = w.next_probe_at
FROM (SELECT u.id, e.next_probe_at
      FROM callback.callbacks_undone u
      JOIN callback.endpoints e ON e.endpoint = u.endpoint
      WHERE e.endpoint = ANY ($1) AND u.state = 'pending' AND u.leased_until IS NULL AND u.due_at < e.next_probe_at
      FOR UPDATE OF u SKIP LOCKED) w
WHERE c.id = w.id
