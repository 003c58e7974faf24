-- The batches worth making now: their first event has waited its max_wait, or they hold enough
-- events or bytes to fill one (an XML or form body counted as twice its events' JSON: making
-- one too early only finds it not full).
SELECT b.batch_key
FROM callback.batch_events b
WHERE b.callback_id IS NULL
GROUP BY b.batch_key
HAVING min(b.send_by) <= now()
    OR count(*) >= min(b.max_count)
    OR sum(octet_length(b.envelope) * CASE WHEN b.format = 'json' THEN 1 ELSE 2 END) >= min(b.max_bytes)
