-- Writes results: one history row per attempt made, and each callback's new state. verdict is
-- delivered, retry (due again after wait seconds), failed, or released (not sent: the worker
-- is stopping or the callback waited too long for a slot; the attempt is not counted). Only
-- rows still leased by worker $10 are touched. Returns the callbacks done (delivered or
-- failed), whether each failed for good, and their order keys, whose next callbacks
-- release.sql lets go. $11 are the callbacks' accounts.
--
-- A done callback's queue row is deleted, and the history row of the attempt that ended it
-- carries the outcome (sql/queue.sql): no row of its own. Its request is not touched.
--
-- Pending is said as neither waiting nor held (the queue's only other states): with
-- `state = 'pending'` the planner may read the due index, which holds just the pending rows,
-- for every one of them when the statistics were taken while they were held or not yet
-- there (a campaign enabled again, a backlog just rendered): half a second a write for a
-- million released, until the next ANALYZE. Only the index on id can serve this one.
WITH r AS (
    SELECT *
    FROM unnest($1::bigint[], $2::int[], $3::float8[], $4::float8[], $5::int[], $6::text[], $7::text[],
                $8::text[], $9::float8[], $11::bigint[])
         AS r(id, attempt, started, duration_ms, http_status, excerpt, error, verdict, wait, account_id)
), again AS (
    UPDATE callback.callbacks_undone c
    SET due_at = CASE WHEN r.verdict = 'retry' THEN now() + make_interval(secs => r.wait) ELSE c.due_at END,
        attempts = CASE WHEN r.verdict = 'released' THEN c.attempts - 1 ELSE c.attempts END,
        leased_until = NULL,
        leased_by = NULL,
        last_http_status = CASE WHEN r.verdict = 'released' THEN c.last_http_status ELSE r.http_status END,
        last_error = CASE WHEN r.verdict = 'released' THEN c.last_error ELSE r.error END
    FROM r
    WHERE c.id = r.id AND c.state NOT IN ('waiting', 'held') AND c.leased_by = $10 AND r.verdict IN ('retry', 'released')
), done AS (
    DELETE FROM callback.callbacks_undone c
    USING r
    WHERE c.id = r.id AND c.state NOT IN ('waiting', 'held') AND c.leased_by = $10 AND r.verdict IN ('delivered', 'failed')
    RETURNING c.id, c.order_hash, r.verdict
), history AS (
    -- An attempt whose callback another worker took over meanwhile (its lease ran out) is kept
    -- in the history, but ends nothing.
    INSERT INTO callback.deliveries (callback_id, account_id, attempt, started_at, duration, http_status,
                                     response_excerpt, error, outcome)
    SELECT r.id, r.account_id, r.attempt, to_timestamp(r.started), make_interval(secs => r.duration_ms / 1000),
           r.http_status, r.excerpt, r.error, done.verdict::callback.callback_state
    FROM r LEFT JOIN done ON done.id = r.id
    WHERE r.verdict <> 'released'
)
SELECT id, verdict = 'failed' AS failed, order_hash FROM done
