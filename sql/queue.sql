-- The callbacks table holds every callback recorded, with everything needed to send it, and
-- the deliveries table every HTTP attempt made for one.
--
-- A worker claims due rows (state pending, due_at passed, no live lease) with
-- FOR UPDATE SKIP LOCKED, sets a lease and commits; it sends with no transaction open and
-- writes a batch's results in one transaction. A lease that expires (its worker died) makes
-- the row claimable again, so nothing is lost.
--
-- Order: a callback recorded while an earlier one with the same order key (same message or
-- campaign, same URL) is not done waits in state 'waiting'; when the earlier one is delivered
-- or fails for good, the next waiting one becomes pending. The claim is then a plain scan of
-- due pending rows.
--
-- The table is partitioned by state: callbacks not yet done (waiting, pending, held) are in
-- callbacks_undone, the queue the workers scan; delivered and failed ones move to
-- callbacks_done when they get there. The queue and its indexes stay as small as the backlog,
-- however much history is kept.

CREATE TYPE callback.callback_state AS ENUM ('waiting', 'pending', 'held', 'delivered', 'failed');
CREATE TYPE callback.target_kind AS ENUM (
    'message', 'campaign_event', 'campaign', 'list', 'account', 'subscription', 'alert'
);
COMMENT ON TYPE callback.callback_state IS 'waiting: an earlier callback with the same order key is not done yet; pending: to be sent (or retried) at due_at; held: its campaign''s callbacks are disabled; delivered; failed: every attempt failed, kept for replay.';
COMMENT ON TYPE callback.target_kind IS 'Which setting chose the URL: the message''s own webhook, the campaign''s URL for the event, the campaign''s or list''s callback URL, the account''s delivery-status webhook, a subscription, or a campaign''s alert URL.';

CREATE TABLE callback.callbacks (
    id bigint GENERATED ALWAYS AS IDENTITY,
    webhook_id uuid NOT NULL DEFAULT gen_random_uuid(),
    event callback.event_type NOT NULL,
    account_id bigint NOT NULL,
    campaign_id bigint,
    message_id bigint,
    target callback.target_kind NOT NULL,
    subscription_id bigint,
    url text NOT NULL,
    -- Computed once, when the callback is rendered (stored).
    endpoint text GENERATED ALWAYS AS (callback._endpoint(url)) STORED,
    method callback.http_method NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}',
    body text,
    auth_header text,
    signing_secret text,
    retry_policy text NOT NULL,
    -- Only ever compared for equality: byte by byte, not by the database's collation (whose
    -- comparisons cost every callback recorded a good part of its index insert).
    order_key text COLLATE "C" NOT NULL,
    state callback.callback_state NOT NULL DEFAULT 'pending',
    attempts int NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    leased_by int,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    last_http_status int,
    last_error text,
    -- A batch (sql/batching.sql): how many events it carries; NULL for a single event.
    batch_size int
) PARTITION BY LIST (state);
-- fillfactor: room for HOT updates, as leasing a row changes no indexed column.
CREATE TABLE callback.callbacks_undone PARTITION OF callback.callbacks
    FOR VALUES IN ('waiting', 'pending', 'held') WITH (fillfactor = 70);
CREATE TABLE callback.callbacks_done PARTITION OF callback.callbacks
    FOR VALUES IN ('delivered', 'failed');
-- Recording inserts into the queue directly (routing a row through the parent costs more than
-- the insert itself); the parent's identity does not apply there, so the same sequence does.
ALTER TABLE callback.callbacks_undone ALTER id SET DEFAULT nextval('callback.callbacks_id_seq');
-- Unique per partition (a key on the parent would have to include state); ids come from one sequence.
CREATE UNIQUE INDEX callbacks_undone_id ON callback.callbacks_undone (id);
CREATE UNIQUE INDEX callbacks_done_id ON callback.callbacks_done (id);
CREATE INDEX callbacks_due ON callback.callbacks_undone (due_at, id) WHERE state = 'pending';
CREATE INDEX callbacks_order ON callback.callbacks_undone (order_key, id);
CREATE INDEX callbacks_waiting ON callback.callbacks_undone (id) WHERE state = 'waiting';
CREATE INDEX callbacks_message ON callback.callbacks (message_id);
CREATE INDEX callbacks_campaign ON callback.callbacks (campaign_id);
COMMENT ON TABLE callback.callbacks_undone IS 'The partition of callbacks not yet done (waiting, pending, held): the queue.';
COMMENT ON TABLE callback.callbacks_done IS 'The partition of delivered and failed callbacks: history, kept for pg_callback.retention (delivered) or until replayed or purged (failed).';

COMMENT ON TABLE callback.callbacks IS 'Every callback recorded: its resolved URL, method, headers and body, fixed when its event happened, and its delivery state.';
COMMENT ON COLUMN callback.callbacks.webhook_id IS 'Sent as the webhook-id header; the same on every retry, so receivers can drop duplicates. Unique without an index to maintain: for an event rendered by a worker, derived from the installation, the event and the target (a version 8 UUID), so that rendering it again after a crash undid the first gives the same; otherwise random.';
COMMENT ON COLUMN callback.callbacks.retry_policy IS 'A row of retry_policies, which cannot be deleted while callbacks name it (no foreign key: it would cost a lookup on every insert).';
COMMENT ON COLUMN callback.callbacks.headers IS 'Content-Type and the target''s custom headers.';
COMMENT ON COLUMN callback.callbacks.body IS 'The rendered body; NULL for GET, whose data is in the URL.';
COMMENT ON COLUMN callback.callbacks.auth_header IS 'The Authorization header (Basic or Bearer) when the target has credentials.';
COMMENT ON COLUMN callback.callbacks.order_key IS 'Callbacks with the same key (same message or campaign, same URL) are delivered in id order: a later one waits while an earlier one is not done.';
COMMENT ON COLUMN callback.callbacks.endpoint IS 'Where its requests go: the URL''s scheme, host and port (the port left out when it is the scheme''s default), fixed when it was rendered (callback._endpoint). Workers limit requests in flight per endpoint; the operating views group by it.';
COMMENT ON COLUMN callback.callbacks.batch_size IS 'A batch of events of one target ({"results": [...]}, sql/batching.sql): how many it carries, each a row of callback.batch_events; NULL for a callback of one event.';
COMMENT ON COLUMN callback.callbacks.due_at IS 'When the next attempt may be made.';
COMMENT ON COLUMN callback.callbacks.leased_until IS 'A worker that claimed the row holds it until then; after that another may reclaim it.';

CREATE TABLE callback.deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    callback_id bigint NOT NULL,
    attempt int NOT NULL,
    started_at timestamptz NOT NULL,
    duration interval NOT NULL,
    http_status int,
    response_excerpt text,
    error text
);
CREATE INDEX ON callback.deliveries (callback_id);
COMMENT ON TABLE callback.deliveries IS 'One row per HTTP attempt: when, how long, the status, a bounded excerpt of the response, the error. callback_id names its callback (no foreign key: the worker writes thousands a second).';

-- What the foreign key from callbacks to retry_policies would do, without its cost per insert.
CREATE FUNCTION callback._retry_policy_in_use() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM callback.callbacks c WHERE c.retry_policy = OLD.name AND c.state IN ('waiting', 'pending', 'held')) THEN
        RAISE EXCEPTION 'retry policy "%" is in use by callbacks not yet done', OLD.name
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER retry_policies_in_use BEFORE DELETE OR UPDATE OF name ON callback.retry_policies
    FOR EACH ROW EXECUTE FUNCTION callback._retry_policy_in_use();

-- What the foreign key from messages.status to statuses would do: the recording trigger
-- (src/record/mod.rs) refuses a status not in callback.statuses, and this one a status messages
-- are in from being deleted or renamed. It holds messages against writes until its
-- transaction ends, so none can take the status meanwhile.
CREATE FUNCTION callback._status_in_use() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    LOCK TABLE callback.messages IN SHARE MODE;
    IF EXISTS (SELECT FROM callback.messages m WHERE m.status = OLD.status) THEN
        RAISE EXCEPTION 'status "%" is in use by messages', OLD.status
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER statuses_in_use BEFORE DELETE OR UPDATE OF status ON callback.statuses
    FOR EACH ROW EXECUTE FUNCTION callback._status_in_use();
