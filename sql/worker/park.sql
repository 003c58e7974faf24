-- The waiting callbacks of down endpoints $1 wait for their next probe (after the endpoint went
-- down, a probe failed, or one was taken: take_probe.sql). Those another worker holds locked are
-- left alone, since that worker may be waiting for the endpoint's row this transaction holds;
-- a claim gives them back to wait for the probe all the same.
UPDATE callback.callbacks_undone c
SET due_at = w.next_probe_at
FROM (SELECT u.id, e.next_probe_at
      FROM callback.callbacks_undone u
      JOIN callback.endpoints e ON e.endpoint = u.endpoint
      WHERE e.endpoint = ANY ($1) AND u.state = 'pending' AND u.leased_until IS NULL AND u.due_at < e.next_probe_at
      FOR UPDATE OF u SKIP LOCKED) w
WHERE c.id = w.id
