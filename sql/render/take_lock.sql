-- One renderer of recorded events at a time (for this transaction), so callbacks of the same
-- order key are made in the order their events were recorded. False: another one has it.
SELECT pg_try_advisory_xact_lock('callback.events'::regclass::oid::bigint)
