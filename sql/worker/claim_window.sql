-- How far a claim that skips endpoints reads (sql/worker/claim.sql): the due time (Unix
-- seconds) and id of the $3-th callback a claim could take after ($1, $2), the start of its
-- scan; no row when fewer are due. The callbacks of the endpoints it skips may be most of the
-- queue (a slow endpoint's backlog of a million): read up to this one, the claim costs a
-- window's rows however many there are, and the next claim goes on after it.
SELECT extract(epoch FROM c.due_at)::float8 AS due, c.id
FROM callback.callbacks_undone c
WHERE c.state = 'pending'
  AND c.due_at <= now()
  AND (c.leased_until IS NULL OR c.leased_until < now())
  AND (c.due_at, c.id) > (to_timestamp($1), $2::bigint)
ORDER BY c.due_at, c.id
OFFSET $3 - 1 LIMIT 1
