-- The enabled subscriptions of account $1 that take event $2 on channel $3, in id order.
SELECT s.id, s.callback_url AS url, s.callback_method::text AS method, s.callback_format::text AS format,
       s.callback_headers::text AS headers, s.callback_basic_auth AS basic_auth,
       s.callback_bearer_token AS bearer_token, s.signing_secret, s.retry_policy,
       callback._batching(s.account_id, 'subscription', s.id) AS batch
FROM callback.subscriptions s
WHERE s.account_id = $1 AND s.enabled
  AND (s.events = '{}' OR $2::callback.event_type = ANY (s.events))
  AND (s.channels = '{}' OR $3::callback.channel = ANY (s.channels))
ORDER BY s.id
