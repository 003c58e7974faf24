-- When the launcher should next start workers: the earliest due time of a callback that is
-- first in its order, or the earliest lease to expire. NULL when nothing is waiting.
SELECT extract(epoch FROM least(
    (SELECT min(c.due_at) FROM callback.callbacks c
     WHERE c.state = 'pending'
       AND NOT EXISTS (
           SELECT FROM callback.callbacks earlier
           WHERE earlier.order_key = c.order_key AND earlier.id < c.id AND earlier.state IN ('pending', 'held'))),
    (SELECT min(c.leased_until) FROM callback.callbacks c WHERE c.state = 'pending' AND c.leased_until > now())
))::float8 * 1000
