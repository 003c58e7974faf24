-- The account of an attached table's message: its campaign's ($1), or its list's ($2).
SELECT coalesce((SELECT c.account_id FROM callback.campaigns c WHERE c.id = $1),
                (SELECT l.account_id FROM callback.lists l WHERE l.id = $2 AND $1 IS NULL))
