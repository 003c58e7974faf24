-- The attempts of message $1, in order: message.final lists them.
SELECT coalesce(array_agg(a.id ORDER BY a.attempt_no), '{}') FROM callback.attempts a WHERE a.message_id = $1
