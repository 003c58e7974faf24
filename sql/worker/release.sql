-- Lets the next waiting callback of each order key in $1 (callback._order_hash of each) go:
-- their callbacks are done. A statement of its own after finish.sql, so that it sees
-- callbacks recorded (and committed) while the finish ran; sweep.sql catches those committed
-- later still.
UPDATE callback.callbacks_undone c
SET state = 'pending', due_at = now()
WHERE c.id IN (SELECT min(w.id)
               FROM callback.callbacks_undone w
               WHERE w.state = 'waiting' AND w.order_hash = ANY ($1::bigint[])
               GROUP BY w.order_hash)
