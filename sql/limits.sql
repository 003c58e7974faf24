-- Requests per second per endpoint (scheme, host and port, as callback._endpoint writes it):
-- an administrator's limit for everyone's callbacks to it, and an account's own for its
-- callbacks to it. Each worker sends within its share of each limit (the limit divided by
-- pg_callback.workers), so together they never exceed it; callbacks to other endpoints pass
-- those that wait. The workers read these tables when they claim (sql/worker/limits.sql).

CREATE TABLE callback.endpoint_limits (
    endpoint text PRIMARY KEY CONSTRAINT endpoint_as_callback_endpoint_writes_it CHECK (endpoint = callback._endpoint(endpoint)),
    requests_per_second numeric NOT NULL CONSTRAINT requests_per_second_from_0_01_to_100000
        CHECK (requests_per_second BETWEEN 0.01 AND 100000)
);
COMMENT ON TABLE callback.endpoint_limits IS 'An administrator''s limit of requests per second to an endpoint (scheme, host and port: callback._endpoint(url)), for every account''s callbacks.';

CREATE TABLE callback.account_endpoint_limits (
    account_id bigint NOT NULL REFERENCES callback.accounts ON DELETE CASCADE,
    endpoint text NOT NULL CONSTRAINT endpoint_as_callback_endpoint_writes_it CHECK (endpoint = callback._endpoint(endpoint)),
    requests_per_second numeric NOT NULL CONSTRAINT requests_per_second_from_0_01_to_100000
        CHECK (requests_per_second BETWEEN 0.01 AND 100000),
    PRIMARY KEY (account_id, endpoint)
);
COMMENT ON TABLE callback.account_endpoint_limits IS 'An account''s own limit of requests per second to an endpoint, for its callbacks (beside the administrator''s, if any).';

SELECT pg_catalog.pg_extension_config_dump('callback.endpoint_limits', '');
SELECT pg_catalog.pg_extension_config_dump('callback.account_endpoint_limits', '');
