-- Events of batching targets, to wait for their batch (src/render/batches.rs): one array per
-- column, in the order their events happened. $6: when each was recorded plus its max_wait,
-- in Unix seconds; $15: its envelope.
INSERT INTO callback.batch_events (
    account_id, batch_key, event, campaign_id, message_id, send_by, max_count, max_bytes, format, target,
    subscription_id, url, method, headers, envelope, auth_header, signing_secret, retry_policy)
SELECT r.account_id, r.batch_key, r.event::callback.event_type, r.campaign_id, r.message_id, to_timestamp(r.send_by),
       r.max_count, r.max_bytes, r.format::callback.body_format, r.target::callback.target_kind, r.subscription_id,
       r.url, r.method::callback.http_method, r.headers::jsonb, r.envelope, r.auth_header, r.signing_secret,
       r.retry_policy
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::float8[], $7::int[], $8::int[],
            $9::text[], $10::text[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
            $17::text[], $18::text[])
     AS r(account_id, batch_key, event, campaign_id, message_id, send_by, max_count, max_bytes, format, target,
          subscription_id, url, method, headers, envelope, auth_header, signing_secret, retry_policy)
