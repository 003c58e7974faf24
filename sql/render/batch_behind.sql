-- Events of account $1 kept out of their batch behind an undone one ($2), their max_wait over:
-- looked at again when a batch is done, and at the latest a second from now (so that the
-- workers' next due time is not one already past).
UPDATE callback.batch_events b
SET send_by = now() + interval '1 second'
WHERE b.account_id = $1 AND b.id = ANY ($2) AND b.send_by < now() + interval '1 second'
