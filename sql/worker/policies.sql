-- The retry policies, read once per claimed batch ($1: pg_callback.default_timeout in seconds,
-- for policies that set no timeout).
SELECT name,
       kind::text AS kind,
       max_attempts,
       extract(epoch FROM step)::float8 AS step,
       extract(epoch FROM cap)::float8 AS cap,
       jitter::float8 AS jitter,
       ARRAY(SELECT extract(epoch FROM i)::float8 FROM unnest(intervals) i) AS intervals,
       coalesce(extract(epoch FROM timeout)::float8, $1) AS timeout,
       success_codes = '200' AS exactly_200
FROM callback.retry_policies
