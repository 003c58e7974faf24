-- Gives back callbacks $1, claimed in this transaction, unsent and due at $2 (Unix seconds)
-- each at the earliest: their endpoint is down and they wait for its probe (sql/health.sql).
-- The attempt the claim counted is not made.
UPDATE callback.callbacks_undone c
SET leased_until = NULL,
    leased_by = NULL,
    attempts = c.attempts - 1,
    due_at = greatest(c.due_at, to_timestamp(r.due))
FROM unnest($1::bigint[], $2::float8[]) AS r(id, due)
WHERE c.id = r.id
