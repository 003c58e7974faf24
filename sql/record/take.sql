-- Takes the oldest $1 events recorded for rendering later (their caller sorts them by id).
-- The caller holds the lock below, so no one else takes events meanwhile.
DELETE FROM callback.events e
WHERE e.id IN (SELECT id FROM callback.events ORDER BY id LIMIT $1)
RETURNING e.*
