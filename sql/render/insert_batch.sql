-- The callbacks rendered from a batch of events (src/render/expand.rs), one array per
-- column, inserted with one statement: insert.sql for many. A callback waits behind an earlier
-- one of its order key, in the queue already or earlier in the batch ($17, which the caller
-- works out: a window and its sorts here cost more to start than the insert of a few rows),
-- and is held while its campaign's callbacks are disabled ($15). The rows go in in the arrays'
-- order, a function scan's, so their ids follow their events. Returns whether any is due now.
WITH inserted AS (
    INSERT INTO callback.callbacks_undone (
        event, account_id, campaign_id, message_id, target, subscription_id,
        url, method, headers, body, auth_header, signing_secret, retry_policy, order_key, state, webhook_id)
    SELECT r.event::callback.event_type, r.account_id, r.campaign_id, r.message_id, r.target::callback.target_kind,
           r.subscription_id, r.url, r.method::callback.http_method, r.headers::jsonb, r.body, r.auth_header,
           r.signing_secret, r.retry_policy, r.order_key,
           CASE WHEN r.held THEN 'held'
                WHEN r.behind THEN 'waiting'
                WHEN EXISTS (SELECT FROM callback.callbacks_undone c WHERE c.order_key = r.order_key) THEN 'waiting'
                ELSE 'pending' END::callback.callback_state,
           r.webhook_id
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                $14::text[], $15::bool[], $16::uuid[], $17::bool[])
         AS r(event, account_id, campaign_id, message_id, target, subscription_id,
              url, method, headers, body, auth_header, signing_secret, retry_policy,
              order_key, held, webhook_id, behind)
    RETURNING state
)
SELECT coalesce(bool_or(state = 'pending'), false) FROM inserted
