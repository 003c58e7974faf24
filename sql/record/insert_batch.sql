-- The callbacks rendered from a batch of events (src/record.rs, _expand_events), one array per
-- column, inserted in their order with one statement: insert.sql for many. A callback waits
-- behind an earlier one of its order key, in the queue already or earlier in the batch, and is
-- held while its campaign's callbacks are disabled ($15). Returns whether any is due now.
WITH rendered AS (
    SELECT r.*,
           row_number() OVER (PARTITION BY r.order_key ORDER BY r.n) > 1 AS behind_in_batch
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                $14::text[], $15::bool[], $16::uuid[])
         WITH ORDINALITY AS r(event, account_id, campaign_id, message_id, target, subscription_id,
                              url, method, headers, body, auth_header, signing_secret, retry_policy,
                              order_key, held, webhook_id, n)
), inserted AS (
    INSERT INTO callback.callbacks_undone (
        event, account_id, campaign_id, message_id, target, subscription_id,
        url, method, headers, body, auth_header, signing_secret, retry_policy, order_key, state, webhook_id)
    SELECT r.event::callback.event_type, r.account_id, r.campaign_id, r.message_id, r.target::callback.target_kind,
           r.subscription_id, r.url, r.method::callback.http_method, r.headers::jsonb, r.body, r.auth_header,
           r.signing_secret, r.retry_policy, r.order_key,
           CASE WHEN r.held THEN 'held'
                WHEN r.behind_in_batch THEN 'waiting'
                WHEN EXISTS (SELECT FROM callback.callbacks_undone c WHERE c.order_key = r.order_key) THEN 'waiting'
                ELSE 'pending' END::callback.callback_state,
           r.webhook_id
    FROM rendered r
    ORDER BY r.n
    RETURNING state
)
SELECT coalesce(bool_or(state = 'pending'), false) FROM inserted
