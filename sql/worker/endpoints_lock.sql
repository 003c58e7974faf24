-- Endpoints $1 as they stand, locked until this batch's results are written, so that workers
-- writing results of one endpoint count its failures one after the other (endpoints_add.sql
-- made rows for those not known yet).
SELECT e.endpoint, e.state = 'down' AS down, e.failures, extract(epoch FROM e.probe_interval)::float8 AS probe_interval,
       e.probe_callback_id
FROM callback.endpoints e
WHERE e.endpoint = ANY ($1)
ORDER BY e.endpoint
FOR UPDATE
