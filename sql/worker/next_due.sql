-- When the launcher should next start workers: the earliest due time of a pending callback,
-- or the earliest lease to expire. NULL when nothing is waiting for a time.
SELECT extract(epoch FROM least(
    (SELECT min(c.due_at) FROM callback.callbacks_undone c WHERE c.state = 'pending' AND c.leased_until IS NULL),
    (SELECT min(c.leased_until) FROM callback.callbacks_undone c WHERE c.state = 'pending' AND c.leased_until > now())
))::float8 * 1000
