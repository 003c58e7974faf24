-- Of messages $2, those with an event in a batch of $1 not done yet (batch_make.sql gives
-- batches order keys of $1, ' #' and their first event). Their events by message first, then
-- each one's batch by id, whatever the statistics say: a batch's hundred messages are a
-- hundred index lookups, not a walk over every undone batch of the target.
WITH events AS MATERIALIZED (
    SELECT o.message_id, o.callback_id
    FROM callback.batch_events o
    WHERE o.message_id = ANY ($2) AND o.callback_id IS NOT NULL
)
SELECT e.message_id
FROM events e
WHERE EXISTS (SELECT FROM callback.callbacks_undone c
              JOIN callback.requests r ON r.account_id = c.account_id AND r.id = c.id
              WHERE c.id = e.callback_id AND r.order_key >= $1 || ' #' AND r.order_key < $1 || ' $'
              OFFSET 0)
GROUP BY e.message_id
