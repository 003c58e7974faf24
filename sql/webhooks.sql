-- Account-level targets: the one delivery-status webhook of an account (seed 004) and any
-- number of subscriptions filtered by event type and channel (seed 002).

CREATE TABLE callback.delivery_webhooks (
    account_id bigint PRIMARY KEY REFERENCES callback.accounts ON DELETE CASCADE,
    url text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE callback.delivery_webhooks IS 'At most one HTTPS URL per account receiving message.status events of every channel for which no more specific URL is set. Managed by create_/update_/revoke_delivery_webhook().';

CREATE TRIGGER delivery_webhooks_check BEFORE INSERT OR UPDATE ON callback.delivery_webhooks
    FOR EACH ROW EXECUTE FUNCTION callback._check_row('https');

CREATE TABLE callback.subscriptions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES callback.accounts ON DELETE CASCADE,
    name text CONSTRAINT name_at_most_200_characters CHECK (length(name) <= 200),
    events callback.event_type[] NOT NULL DEFAULT '{}',
    channels callback.channel[] NOT NULL DEFAULT '{}',
    callback_url text NOT NULL,
    callback_method callback.http_method NOT NULL DEFAULT 'POST',
    callback_format callback.body_format NOT NULL DEFAULT 'json',
    callback_headers jsonb NOT NULL DEFAULT '{}',
    callback_basic_auth text,
    callback_bearer_token text,
    signing_secret text,
    retry_policy text NOT NULL DEFAULT 'standard' REFERENCES callback.retry_policies,
    enabled bool NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON callback.subscriptions (account_id) WHERE enabled;
COMMENT ON TABLE callback.subscriptions IS 'A standing order for a copy of every matching event of an account, whatever other URL also receives it.';
COMMENT ON COLUMN callback.subscriptions.events IS 'The event types sent; empty: all.';
COMMENT ON COLUMN callback.subscriptions.channels IS 'The message channels sent; empty: all. A subscription with channels gets no campaign events.';

CREATE TRIGGER subscriptions_check BEFORE INSERT OR UPDATE ON callback.subscriptions
    FOR EACH ROW EXECUTE FUNCTION callback._check_row();

-- The four operations of seed 004; each raises its documented SQLSTATE.

CREATE FUNCTION callback._require_account(account_id bigint) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF account_id IS NULL THEN
        RAISE EXCEPTION 'account_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM FROM callback.accounts a WHERE a.id = _require_account.account_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'account % does not exist', account_id USING ERRCODE = 'undefined_object';
    END IF;
END $$;

CREATE FUNCTION callback._no_webhook(account_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'account % has no delivery-status webhook', account_id
        USING ERRCODE = 'undefined_object',
              HINT = 'Create one with callback.create_delivery_webhook().';
END $$;

CREATE FUNCTION callback.create_delivery_webhook(account_id bigint, url text)
RETURNS callback.delivery_webhooks
LANGUAGE plpgsql AS $$
DECLARE
    hook callback.delivery_webhooks;
BEGIN
    PERFORM callback._require_account(account_id);
    IF url IS NULL THEN
        RAISE EXCEPTION 'url must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO callback.delivery_webhooks AS w (account_id, url)
    VALUES (create_delivery_webhook.account_id, create_delivery_webhook.url)
    ON CONFLICT DO NOTHING
    RETURNING * INTO hook;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'account % already has a delivery-status webhook', account_id
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Change it with callback.update_delivery_webhook(), or remove it with callback.revoke_delivery_webhook() first.';
    END IF;
    RETURN hook;
END $$;

CREATE FUNCTION callback.delivery_webhook(account_id bigint) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found_url text;
BEGIN
    PERFORM callback._require_account(account_id);
    SELECT w.url INTO found_url FROM callback.delivery_webhooks w WHERE w.account_id = delivery_webhook.account_id;
    IF NOT FOUND THEN
        PERFORM callback._no_webhook(account_id);
    END IF;
    RETURN found_url;
END $$;

CREATE FUNCTION callback.update_delivery_webhook(account_id bigint, url text)
RETURNS callback.delivery_webhooks
LANGUAGE plpgsql AS $$
DECLARE
    hook callback.delivery_webhooks;
BEGIN
    PERFORM callback._require_account(account_id);
    IF url IS NULL THEN
        RAISE EXCEPTION 'url must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE callback.delivery_webhooks w SET url = update_delivery_webhook.url, updated_at = now()
    WHERE w.account_id = update_delivery_webhook.account_id
    RETURNING * INTO hook;
    IF NOT FOUND THEN
        PERFORM callback._no_webhook(account_id);
    END IF;
    RETURN hook;
END $$;

CREATE FUNCTION callback.revoke_delivery_webhook(account_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM callback._require_account(account_id);
    DELETE FROM callback.delivery_webhooks w WHERE w.account_id = revoke_delivery_webhook.account_id;
    IF NOT FOUND THEN
        PERFORM callback._no_webhook(account_id);
    END IF;
END $$;

COMMENT ON FUNCTION callback.create_delivery_webhook(bigint, text) IS
    'Sets the account''s delivery-status webhook to url (well-formed HTTPS). 42710 if the account has one already, 42704 if the account does not exist, 22023 if the URL is bad.';
COMMENT ON FUNCTION callback.delivery_webhook(bigint) IS
    'The URL of the account''s delivery-status webhook; 42704 if it has none.';
COMMENT ON FUNCTION callback.update_delivery_webhook(bigint, text) IS
    'Replaces the URL of the account''s delivery-status webhook for events recorded from now on (callbacks already recorded keep the old URL); 42704 if it has none.';
COMMENT ON FUNCTION callback.revoke_delivery_webhook(bigint) IS
    'Removes the account''s delivery-status webhook; callbacks already recorded are still delivered. 42704 if it has none.';
