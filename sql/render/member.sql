-- A member's list and attributes (NULL when it has none).
SELECT list_id, nullif(attributes, '{}')::text AS attributes FROM callback.members WHERE id = $1
