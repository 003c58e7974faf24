-- Batched reports (seed 002's shape): a target that asks for it gets its events several to a
-- request, `{"results": [...]}` (README, "Batched reports", shows the XML and form bodies).
--
-- Set per account (its delivery-status webhook), list, campaign (else its list's applies) or
-- subscription with callback.set_batching(). An event rendered for such a target does not
-- become a callback of its own: it waits in callback.batch_events, and the workers, when they
-- render, make each batch a callback (src/render/batches.rs) once it holds max_count events or
-- max_bytes of body, or its first event has waited max_wait. The batch is then sent, retried
-- and held like any callback, its history (deliveries) shared by its events: callback.history
-- shows each event with every attempt of its batch.
--
-- A target's batches go out side by side (within its endpoint's limits). An event whose
-- message has an event in a batch of the target not done yet waits for that one (and its
-- message's later events with it), so each message's events still arrive in order.

CREATE TABLE callback.batching (
    account_id bigint NOT NULL REFERENCES callback.accounts ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    target text NOT NULL CONSTRAINT target_account_list_campaign_or_subscription
        CHECK (target IN ('account', 'list', 'campaign', 'subscription')),
    target_id bigint NOT NULL,
    max_count int NOT NULL CONSTRAINT max_count_1_to_1000 CHECK (max_count BETWEEN 1 AND 1000),
    max_bytes int NOT NULL DEFAULT 1048576
        CONSTRAINT max_bytes_1kib_to_10mib CHECK (max_bytes BETWEEN 1024 AND 10485760),
    max_wait interval NOT NULL DEFAULT '1 second'
        CONSTRAINT max_wait_0_to_1_hour CHECK (max_wait BETWEEN '0' AND '1 hour'),
    PRIMARY KEY (account_id, id),
    UNIQUE (account_id, target, target_id)
);
COMMENT ON TABLE callback.batching IS 'Targets whose events are sent several to a request ({"results": [...]}): an account''s delivery-status webhook, a list, a campaign (else its list''s applies) or a subscription. Set with callback.set_batching(); delete the row to send one event per request again.';
COMMENT ON COLUMN callback.batching.max_count IS 'Events per request at most (1 to 1000).';
COMMENT ON COLUMN callback.batching.max_bytes IS 'Bytes of body per request at most (1 KiB to 10 MiB); an event larger on its own goes alone.';
COMMENT ON COLUMN callback.batching.max_wait IS 'How long an event waits for others before its batch goes anyway (0 to 1 hour).';
SELECT pg_catalog.pg_extension_config_dump('callback.batching', '');
SELECT pg_catalog.pg_extension_config_dump(pg_get_serial_sequence('callback.batching', 'id')::regclass, '');

-- Raises 42704 when the target is not one of the account's (sql/certificates.sql).
CREATE FUNCTION callback._check_batching() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM callback._check_target(NEW.account_id, NEW.target, NEW.target_id);
    RETURN NEW;
END $$;
CREATE TRIGGER batching_check BEFORE INSERT OR UPDATE ON callback.batching
    FOR EACH ROW EXECUTE FUNCTION callback._check_batching();

-- A list's, campaign's or subscription's batching goes with it.
CREATE TRIGGER lists_drop_batching AFTER DELETE ON callback.lists
    FOR EACH ROW EXECUTE FUNCTION callback._drop_target_rows('batching', 'list');
CREATE TRIGGER campaigns_drop_batching AFTER DELETE ON callback.campaigns
    FOR EACH ROW EXECUTE FUNCTION callback._drop_target_rows('batching', 'campaign');
CREATE TRIGGER subscriptions_drop_batching AFTER DELETE ON callback.subscriptions
    FOR EACH ROW EXECUTE FUNCTION callback._drop_target_rows('batching', 'subscription');

-- How rendering reads a target's batching (src/render/targets.rs): 'count bytes wait_ms',
-- NULL when its events go one to a request.
CREATE FUNCTION callback._batching(account_id bigint, target text, target_id bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT concat_ws(' ', b.max_count, b.max_bytes, (extract(epoch FROM b.max_wait) * 1000)::bigint)
    FROM callback.batching b
    WHERE b.account_id = _batching.account_id AND b.target = _batching.target AND b.target_id = _batching.target_id
$$;

CREATE FUNCTION callback.set_batching(target text, target_id bigint, max_count int, max_bytes int DEFAULT 1048576,
                                      max_wait interval DEFAULT '1 second')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    owner_account bigint := callback._target_owner(target, target_id, '{account, list, campaign, subscription}');
    kept bigint;
BEGIN
    INSERT INTO callback.batching AS b (account_id, target, target_id, max_count, max_bytes, max_wait)
    VALUES (owner_account, target, target_id, max_count, max_bytes, max_wait)
    ON CONFLICT ON CONSTRAINT batching_account_id_target_target_id_key DO UPDATE
        SET max_count = EXCLUDED.max_count, max_bytes = EXCLUDED.max_bytes, max_wait = EXCLUDED.max_wait
    RETURNING b.id INTO kept;
    RETURN kept;
END $$;
COMMENT ON FUNCTION callback.set_batching(text, bigint, int, int, interval) IS
    'Sends the events of an account''s delivery-status webhook, a list, a campaign or a subscription several to a request ({"results": [...]}): at most max_count events (1-1000) and max_bytes of body (1 KiB-10 MiB), an event waiting at most max_wait for others (0-1 hour); replaces the target''s batching; returns its id. Events rendered from then on are batched; delete the row of callback.batching to stop.';

-- Events of batching targets: waiting for their batch (callback_id NULL, with what their batch
-- is made of), then in it (callback_id set, the rest cleared): the link from each event to
-- its batch's callback, and so to its history.
CREATE TABLE callback.batch_events (
    account_id bigint NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    -- The batch's callback; NULL while the event waits for its batch.
    callback_id bigint,
    event callback.event_type NOT NULL,
    campaign_id bigint,
    message_id bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- While waiting: the batch it goes in (target, campaign, URL), when its batch goes at
    -- the latest, the limits, and the callback as rendered, its body the event's envelope (JSON).
    batch_key text COLLATE "C",
    send_by timestamptz,
    max_count int,
    max_bytes int,
    format callback.body_format,
    target callback.target_kind,
    subscription_id bigint,
    url text,
    method callback.http_method,
    headers jsonb,
    envelope text,
    auth_header text,
    signing_secret text,
    retry_policy text,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX batch_events_waiting ON callback.batch_events (batch_key, id) WHERE callback_id IS NULL;
CREATE INDEX batch_events_callback ON callback.batch_events (callback_id);
CREATE INDEX batch_events_message ON callback.batch_events (message_id);
SELECT pg_catalog.pg_extension_config_dump('callback.batch_events', '');
SELECT pg_catalog.pg_extension_config_dump(pg_get_serial_sequence('callback.batch_events', 'id')::regclass, '');
COMMENT ON TABLE callback.batch_events IS 'Each event sent to a batching target: waiting for its batch (callback_id NULL), then the link to the callback of the batch it went in (whose history is its history). Deleted with that callback.';
