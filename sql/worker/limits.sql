-- Every limit of requests per second (sql/limits.sql): an administrator's (account_id NULL)
-- and the accounts' own. A worker reads them at most once a second (src/deliver/claim.rs).
SELECT l.endpoint, NULL::bigint AS account_id, l.requests_per_second::float8 AS requests_per_second
FROM callback.endpoint_limits l
UNION ALL
SELECT a.endpoint, a.account_id, a.requests_per_second::float8
FROM callback.account_endpoint_limits a
