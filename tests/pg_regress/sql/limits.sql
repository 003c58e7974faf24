-- Requests per second per endpoint: an administrator's limit and an account's own, each for an
-- endpoint written as callback._endpoint writes it; bad values refused; a tenant sets its own
-- account's limits only.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
DROP ROLE IF EXISTS limits_app;
CREATE EXTENSION pg_callback;
CREATE ROLE limits_app;
INSERT INTO callback.accounts (name) VALUES ('acme'), ('globex');
SELECT callback.grant_account(1, 'limits_app');

INSERT INTO callback.endpoint_limits (endpoint, requests_per_second)
VALUES (callback._endpoint('https://CRM.example.com:443/dlr'), 200);
SELECT * FROM callback.endpoint_limits;
-- Not an endpoint as callbacks carry it (a path, a default port, upper case): it could never match.
INSERT INTO callback.endpoint_limits (endpoint, requests_per_second) VALUES ('https://crm.example.com/dlr', 10);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.endpoint_limits (endpoint, requests_per_second) VALUES ('https://crm.example.com:443', 10);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.endpoint_limits (endpoint, requests_per_second) VALUES ('https://hooks.example.com', 0);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.endpoint_limits (endpoint, requests_per_second) VALUES ('https://hooks.example.com', 1000000);
\echo :LAST_ERROR_SQLSTATE

-- A tenant: its own account's limits, read the administrator's, nothing of another account.
SET ROLE limits_app;
INSERT INTO callback.account_endpoint_limits (account_id, endpoint, requests_per_second)
VALUES (1, 'https://crm.example.com', 50);
INSERT INTO callback.account_endpoint_limits (account_id, endpoint, requests_per_second)
VALUES (2, 'https://crm.example.com', 1);
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.endpoint_limits SET requests_per_second = 100000;
\echo :LAST_ERROR_SQLSTATE
SELECT endpoint, requests_per_second FROM callback.endpoint_limits;
SELECT account_id, endpoint, requests_per_second FROM callback.account_endpoint_limits;
RESET ROLE;
SELECT account_id, endpoint, requests_per_second FROM callback.account_endpoint_limits;
DROP EXTENSION pg_callback CASCADE;
DROP ROLE limits_app;
