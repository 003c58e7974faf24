-- Retention: up to $2 delivered callbacks finished more than $1 seconds ago, and their history.
SELECT callback.purge(make_interval(secs => $1), $2)
