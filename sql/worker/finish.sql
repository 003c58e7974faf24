-- Writes a batch's results: one history row per attempt made, and each callback's new state.
-- verdict is delivered, retry (due again after wait seconds), failed, or released (not sent:
-- the worker is stopping; the attempt is not counted). Only rows still leased by worker $10
-- are touched. A callback done (delivered or failed) lets the next one with its order key go.
-- Returns which callbacks failed for good.
WITH r AS (
    SELECT *
    FROM unnest($1::bigint[], $2::int[], $3::float8[], $4::float8[], $5::int[], $6::text[], $7::text[],
                $8::text[], $9::float8[])
         AS r(id, attempt, started, duration_ms, http_status, excerpt, error, verdict, wait)
), history AS (
    INSERT INTO callback.deliveries (callback_id, attempt, started_at, duration, http_status, response_excerpt, error)
    SELECT r.id, r.attempt, to_timestamp(r.started), make_interval(secs => r.duration_ms / 1000),
           r.http_status, r.excerpt, r.error
    FROM r
    WHERE r.verdict <> 'released'
), finished AS (
    UPDATE callback.callbacks c
    SET state = CASE r.verdict WHEN 'delivered' THEN 'delivered' WHEN 'failed' THEN 'failed'
                               ELSE 'pending' END::callback.callback_state,
        due_at = CASE WHEN r.verdict = 'retry' THEN now() + make_interval(secs => r.wait) ELSE c.due_at END,
        attempts = CASE WHEN r.verdict = 'released' THEN c.attempts - 1 ELSE c.attempts END,
        leased_until = NULL,
        leased_by = NULL,
        finished_at = CASE WHEN r.verdict IN ('delivered', 'failed') THEN now() END,
        last_http_status = CASE WHEN r.verdict = 'released' THEN c.last_http_status ELSE r.http_status END,
        last_error = CASE WHEN r.verdict = 'released' THEN c.last_error ELSE r.error END
    FROM r
    WHERE c.id = r.id AND c.state = 'pending' AND c.leased_by = $10
    RETURNING c.id, c.state, c.order_key
), next_in_order AS (
    UPDATE callback.callbacks c
    SET state = 'pending', due_at = now()
    WHERE c.id IN (SELECT min(w.id)
                   FROM callback.callbacks w
                   JOIN finished f ON f.order_key = w.order_key AND f.state IN ('delivered', 'failed')
                   WHERE w.state = 'waiting'
                   GROUP BY w.order_key)
)
SELECT id, state = 'failed' AS failed FROM finished
