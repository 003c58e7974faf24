-- Every status: whether it is final, and the event it fires.
SELECT status, final, fires::text AS fires FROM callback.statuses
