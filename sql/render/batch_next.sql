-- When the first event waiting for its batch may go at the latest (Unix milliseconds); NULL
-- when none waits.
SELECT (extract(epoch FROM min(b.send_by)) * 1000)::float8
FROM callback.batch_events b
WHERE b.callback_id IS NULL
