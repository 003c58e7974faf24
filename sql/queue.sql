-- The callbacks table holds every callback recorded, with everything needed to send it, and
-- the deliveries table every HTTP attempt made for one.
--
-- A worker claims due rows (state pending, due_at passed, no live lease) with
-- FOR UPDATE SKIP LOCKED, sets a lease and commits; it sends with no transaction open and
-- writes a batch's results in one transaction. A lease that expires (its worker died) makes
-- the row claimable again, so nothing is lost.

CREATE TYPE callback.callback_state AS ENUM ('pending', 'held', 'delivered', 'failed');
CREATE TYPE callback.target_kind AS ENUM (
    'message', 'campaign_event', 'campaign', 'list', 'account', 'subscription', 'alert'
);
COMMENT ON TYPE callback.callback_state IS 'pending: waiting to be sent (or retried) at due_at; held: its campaign''s callbacks are disabled; delivered; failed: every attempt failed, kept for replay.';
COMMENT ON TYPE callback.target_kind IS 'Which setting chose the URL: the message''s own webhook, the campaign''s URL for the event, the campaign''s or list''s callback URL, the account''s delivery-status webhook, a subscription, or a campaign''s alert URL.';

CREATE TABLE callback.callbacks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    event callback.event_type NOT NULL,
    account_id bigint NOT NULL,
    campaign_id bigint,
    message_id bigint,
    target callback.target_kind NOT NULL,
    subscription_id bigint,
    url text NOT NULL,
    method callback.http_method NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}',
    body text,
    auth_header text,
    signing_secret text,
    retry_policy text NOT NULL REFERENCES callback.retry_policies,
    order_key text NOT NULL,
    state callback.callback_state NOT NULL DEFAULT 'pending',
    attempts int NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    leased_by int,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    last_http_status int,
    last_error text
);
CREATE INDEX callbacks_due ON callback.callbacks (due_at, id) WHERE state = 'pending';
CREATE INDEX callbacks_order ON callback.callbacks (order_key, id) WHERE state IN ('pending', 'held');
CREATE INDEX callbacks_message ON callback.callbacks (message_id);
CREATE INDEX callbacks_campaign ON callback.callbacks (campaign_id);

COMMENT ON TABLE callback.callbacks IS 'Every callback recorded: its resolved URL, method, headers and body, fixed when its event happened, and its delivery state.';
COMMENT ON COLUMN callback.callbacks.webhook_id IS 'Sent as the webhook-id header; the same on every retry, so receivers can drop duplicates.';
COMMENT ON COLUMN callback.callbacks.headers IS 'Content-Type and the target''s custom headers.';
COMMENT ON COLUMN callback.callbacks.body IS 'The rendered body; NULL for GET, whose data is in the URL.';
COMMENT ON COLUMN callback.callbacks.auth_header IS 'The Authorization header (Basic or Bearer) when the target has credentials.';
COMMENT ON COLUMN callback.callbacks.order_key IS 'Callbacks with the same key (same message or campaign, same URL) are delivered in id order.';
COMMENT ON COLUMN callback.callbacks.due_at IS 'When the next attempt may be made.';
COMMENT ON COLUMN callback.callbacks.leased_until IS 'A worker that claimed the row holds it until then; after that another may reclaim it.';

CREATE TABLE callback.deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    callback_id bigint NOT NULL REFERENCES callback.callbacks ON DELETE CASCADE,
    attempt int NOT NULL,
    started_at timestamptz NOT NULL,
    duration interval NOT NULL,
    http_status int,
    response_excerpt text,
    error text
);
CREATE INDEX ON callback.deliveries (callback_id);
COMMENT ON TABLE callback.deliveries IS 'One row per HTTP attempt: when, how long, the status, a bounded excerpt of the response, the error.';

-- The Content-Type header a body format is sent with.
CREATE FUNCTION callback._content_type(format callback.body_format) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE format
    WHEN 'json' THEN 'application/json'
    WHEN 'xml' THEN 'application/xml; charset=utf-8'
    WHEN 'form' THEN 'application/x-www-form-urlencoded'
END;
