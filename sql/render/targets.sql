-- What the targets of an event are chosen from (sql/events.sql): $1 campaign, $2 the list of a
-- message outside campaigns, $3 account.
SELECT * FROM callback._target_settings($1, $2, $3)
