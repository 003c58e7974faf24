-- pg_callback 0.2.0 to 0.3.0: each callback's endpoint (scheme, host and port) computed once,
-- when it is rendered, and stored on it for the claim, the per-endpoint limits and the views;
-- the template variables of message events and the timestamps in bodies made by the same Rust
-- code as rendering's (callback._message_vars_of, callback._iso), and callback._endpoint too.
-- Frozen with the release: the files it was made from (sql/queue.sql, events.sql, views.sql,
-- model.sql) go on changing for later versions. tests/integration/test_upgrade.py checks that
-- it leaves the schema a fresh install of 0.3.0 makes.
\echo Use "ALTER EXTENSION pg_callback UPDATE TO '0.3.0'" to load this file. \quit

-- Functions that were SQL and are now the library's, and the one 0.3.0 adds.
CREATE OR REPLACE FUNCTION callback._endpoint(
	"url" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'endpoint_wrapper';
CREATE OR REPLACE FUNCTION callback._iso(
	"ts" timestamp with time zone /* TimestampWithTimeZone */
) RETURNS TEXT /* Option < String > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'iso_wrapper';
CREATE FUNCTION callback._message_vars_of(
	"message" jsonb, /* JsonB */
	"attributes" jsonb, /* Option < JsonB > */
	"env" jsonb, /* Option < JsonB > */
	"list_id" bigint /* Option < i64 > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'message_vars_of_wrapper';
REVOKE ALL ON FUNCTION callback._message_vars_of(jsonb, jsonb, jsonb, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._message_vars_of(jsonb, jsonb, jsonb, bigint) TO callback_admin, callback_tenant;

CREATE OR REPLACE FUNCTION callback._message_vars(message callback.messages, campaign callback.campaigns) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT callback._message_vars_of(to_jsonb(message), member.attributes, campaign.env,
                                     coalesce(campaign.list_id, member.list_id))
    FROM (SELECT NULL) AS one
    LEFT JOIN callback.members member ON member.id = message.member_id
$$;

-- Every callback kept (history included) gets its endpoint: this rewrites the callbacks
-- table once.
ALTER TABLE callback.callbacks
    ADD COLUMN endpoint text GENERATED ALWAYS AS (callback._endpoint(url)) STORED;
COMMENT ON COLUMN callback.callbacks.endpoint IS 'Where its requests go: the URL''s scheme, host and port (the port left out when it is the scheme''s default), fixed when it was rendered (callback._endpoint). Workers limit requests in flight per endpoint; the operating views group by it.';
GRANT SELECT (endpoint) ON callback.callbacks TO callback_tenant;

CREATE OR REPLACE VIEW callback.queue WITH (security_invoker = true) AS
SELECT c.endpoint,
       count(*) AS depth,
       count(*) FILTER (WHERE c.state = 'pending' AND c.due_at <= now() AND c.leased_until IS NULL) AS due,
       count(*) FILTER (WHERE c.leased_until > now()) AS in_flight,
       count(*) FILTER (WHERE c.state = 'pending' AND c.due_at > now()) AS retrying,
       count(*) FILTER (WHERE c.state = 'waiting') AS waiting,
       count(*) FILTER (WHERE c.state = 'held') AS held,
       coalesce(max(now() - c.due_at) FILTER (WHERE c.state = 'pending' AND c.due_at <= now()), '0') AS lag,
       min(c.recorded_at) AS oldest_recorded_at
FROM callback.callbacks c
WHERE c.state IN ('waiting', 'pending', 'held')
GROUP BY 1;
COMMENT ON VIEW callback.queue IS 'Callbacks not done yet, per endpoint (scheme, host and port): how many, due now, in flight, waiting for a retry, waiting behind an earlier one, held; lag: how long the longest-due callback has been due.';

CREATE OR REPLACE VIEW callback.endpoint_health WITH (security_invoker = true) AS
WITH attempts AS (
    SELECT c.endpoint, d.started_at, d.error IS NULL AS ok, d.http_status, d.error
    FROM callback.deliveries d
    JOIN callback.callbacks c ON c.id = d.callback_id
), last_success AS (
    SELECT endpoint, max(started_at) FILTER (WHERE ok) AS at FROM attempts GROUP BY endpoint
)
SELECT a.endpoint,
       count(*) AS attempts,
       round(avg(a.ok::int), 4) AS success_rate,
       count(*) FILTER (WHERE a.started_at > now() - interval '1 hour') AS attempts_last_hour,
       round(avg(a.ok::int) FILTER (WHERE a.started_at > now() - interval '1 hour'), 4) AS success_rate_last_hour,
       count(*) FILTER (WHERE NOT a.ok AND a.started_at > coalesce(s.at, '-infinity')) AS consecutive_failures,
       s.at AS last_success_at,
       max(a.started_at) FILTER (WHERE NOT a.ok) AS last_failure_at,
       (array_agg(a.error ORDER BY a.started_at DESC) FILTER (WHERE NOT a.ok))[1] AS last_error,
       max(a.started_at) AS last_attempt_at
FROM attempts a
JOIN last_success s USING (endpoint)
GROUP BY a.endpoint, s.at;
COMMENT ON VIEW callback.endpoint_health IS 'Every endpoint (scheme, host and port) in the history kept: attempts and success rate, overall and in the last hour; failures since the last success; the last success, failure and error.';
