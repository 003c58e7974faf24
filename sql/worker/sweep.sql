-- Waiting callbacks with nothing left before them are due: their predecessor finished while
-- they were being recorded, so the release that went with it (release.sql) did not see them.
-- Run every few seconds while a worker is busy, and before it leaves.
UPDATE callback.callbacks_undone w
SET state = 'pending', due_at = now()
WHERE w.state = 'waiting'
  AND NOT EXISTS (SELECT FROM callback.callbacks_undone o WHERE o.order_hash = w.order_hash AND o.id < w.id)
