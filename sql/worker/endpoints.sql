-- The endpoints whose health the workers follow (sql/health.sql): down, or failing since their
-- last answer. Read at each claim (src/deliver/health.rs).
SELECT e.endpoint, e.state = 'down' AS down, extract(epoch FROM e.next_probe_at)::float8 AS next_probe
FROM callback.endpoints e
WHERE e.state = 'down' OR e.failures > 0
