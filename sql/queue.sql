-- A callback is written in three parts, so that each byte of it is written once:
--
-- * callback.requests: what it sends (URL, method, headers, body, credentials, webhook-id) and
--   why (event, account, campaign, message, target), written when its event is rendered and
--   never changed;
-- * callback.callbacks_undone, the queue: a narrow row per callback not done yet, with its
--   state, due time, lease and attempts, deleted when it is done;
-- * how it ended: the attempt that ended it, its row in callback.deliveries (the history of
--   every attempt) marked with the outcome; or, for a callback ended by no attempt (canceled,
--   unsendable, given a done state by an administrator), a narrow row in callbacks_ended.
--   The view callback.callbacks_done shows both alike: a row per callback delivered or failed
--   for good. A callback has at most one of them: making it not done (callback._reopen)
--   removes it.
--
-- The view callback.callbacks puts them together. Delivering a callback so deletes its queue
-- row and inserts the attempt's history row, marked; the request, the widest part, is not
-- copied or rewritten (BENCHMARKS.md, "Bytes per callback"), nor its page touched again.
--
-- A worker claims due queue rows (state pending, due_at passed, no live lease) with
-- FOR UPDATE SKIP LOCKED, sets a lease and commits; it sends with no transaction open and
-- writes a batch's results in one transaction. A lease that expires (its worker died) makes
-- the row claimable again, so nothing is lost.
--
-- Order: a callback recorded while an earlier one with the same order key (same message or
-- campaign, same URL) is not done waits in state 'waiting'; when the earlier one is delivered
-- or fails for good, the next waiting one becomes pending. The claim is then a plain scan of
-- due pending rows. The queue and its indexes stay as small as the backlog, however much
-- history is kept.

CREATE TYPE callback.callback_state AS ENUM ('waiting', 'pending', 'held', 'delivered', 'failed');
CREATE TYPE callback.target_kind AS ENUM (
    'message', 'campaign_event', 'campaign', 'list', 'account', 'subscription', 'alert'
);
COMMENT ON TYPE callback.callback_state IS 'waiting: an earlier callback with the same order key is not done yet; pending: to be sent (or retried) at due_at; held: its campaign''s callbacks are disabled; delivered; failed: every attempt failed, kept for replay.';
COMMENT ON TYPE callback.target_kind IS 'Which setting chose the URL: the message''s own webhook, the campaign''s URL for the event, the campaign''s or list''s callback URL, the account''s delivery-status webhook, a subscription, or a campaign''s alert URL.';

-- Ids of callbacks: rendering takes them ahead (nextval) to write a request and its queue row
-- in one statement.
CREATE SEQUENCE callback.callbacks_id_seq;

CREATE TABLE callback.requests (
    -- The columns of 8 bytes first, then those of 4, then those of any length: no padding
    -- between them for alignment.
    id bigint NOT NULL DEFAULT nextval('callback.callbacks_id_seq'),
    account_id bigint NOT NULL,
    campaign_id bigint,
    message_id bigint,
    subscription_id bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    webhook_id uuid NOT NULL DEFAULT gen_random_uuid(),
    event callback.event_type NOT NULL,
    target callback.target_kind NOT NULL,
    method callback.http_method NOT NULL,
    -- A batch (sql/batching.sql): how many events it carries; NULL for a single event.
    batch_size int,
    url text NOT NULL,
    -- callback._headers_kept(): without the Content-Type of a JSON body, which
    -- callback._headers_sent() puts back.
    headers jsonb NOT NULL DEFAULT '{}',
    -- callback._packed_body() of the body: compressed, byte for byte what is sent.
    body bytea,
    auth_header text,
    signing_secret text,
    retry_policy text NOT NULL,
    -- Only ever compared for equality: byte by byte, not by the database's collation (whose
    -- comparisons cost every callback recorded a good part of its index insert). NULL when it
    -- is callback._order_key(message_id, campaign_id, url), as for every single event's.
    order_key text COLLATE "C"
);
ALTER SEQUENCE callback.callbacks_id_seq OWNED BY callback.requests.id;
CREATE UNIQUE INDEX requests_id ON callback.requests (id);
CREATE INDEX requests_message ON callback.requests (message_id);
CREATE INDEX requests_campaign ON callback.requests (campaign_id);
COMMENT ON TABLE callback.requests IS 'What each callback sends and why, fixed when its event was rendered: its resolved URL, method, headers and body, credentials, webhook-id; its event, account, campaign, message and target. Never changed; deleted with its history (callback.purge).';
COMMENT ON COLUMN callback.requests.webhook_id IS 'Sent as the webhook-id header; the same on every retry, so receivers can drop duplicates. Unique without an index to maintain: for an event rendered by a worker, derived from the installation, the event and the target (a version 8 UUID), so that rendering it again after a crash undid the first gives the same; otherwise random.';
COMMENT ON COLUMN callback.requests.retry_policy IS 'A row of retry_policies, which cannot be deleted while callbacks not done name it (no foreign key: it would cost a lookup on every insert).';
COMMENT ON COLUMN callback.requests.headers IS 'The target''s custom headers, and the Content-Type of an XML or form body (callback._headers_sent() adds that of a JSON body, as callback.callbacks shows it).';
COMMENT ON COLUMN callback.requests.body IS 'The rendered body as stored, compressed against a dictionary of pg_callback''s envelopes (a body of 400 bytes in about 50): callback._body(body) is the text sent, as callback.callbacks shows it. NULL for GET, whose data is in the URL.';
COMMENT ON COLUMN callback.requests.auth_header IS 'The Authorization header (Basic or Bearer) when the target has credentials.';
COMMENT ON COLUMN callback.requests.order_key IS 'Callbacks with the same key (same message or campaign, same URL) are delivered in id order: a later one waits while an earlier one is not done. NULL when it is callback._order_key(message_id, campaign_id, url), as for a single event (callback.callbacks shows it whole); a batch''s own otherwise.';
COMMENT ON COLUMN callback.requests.batch_size IS 'A batch of events of one target ({"results": [...]}, sql/batching.sql): how many it carries, each a row of callback.batch_events; NULL for a callback of one event.';

-- A request's headers as stored and as sent: the Content-Type of a JSON body, most bodies',
-- is not stored (36 bytes a callback), and is put back for sending and showing.
CREATE FUNCTION callback._headers_kept(headers jsonb, has_body bool) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN has_body AND headers ->> 'Content-Type' = 'application/json' THEN headers - 'Content-Type'
                ELSE headers END
$$;
CREATE FUNCTION callback._headers_sent(headers jsonb, has_body bool) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN has_body AND NOT headers ? 'Content-Type'
                THEN jsonb_build_object('Content-Type', 'application/json') || headers
                ELSE headers END
$$;

-- What the queue orders by: a hash of the request's order key, 8 bytes in its row and index
-- where the key (its URL and more) took about 45 twice. Two keys with the same hash would only
-- make one wait for the other.
CREATE FUNCTION callback._order_hash(order_key text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT hashtextextended(order_key, 0) $$;

-- The queue. Its account, campaign, target and order key (hashed) are the request's, and its
-- endpoint that of the request's URL (callback._endpoint, computed once, when it is rendered),
-- kept so that claiming, ordering, holding a campaign's callbacks and limiting an endpoint
-- read the queue alone. fillfactor 50: room on its page for the row written again when it is
-- released, and when it is leased (a HOT update, as a lease changes no indexed column).
CREATE TABLE callback.callbacks_undone (
    -- As the requests' columns: by their alignment.
    id bigint NOT NULL,
    account_id bigint NOT NULL,
    campaign_id bigint,
    due_at timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    -- callback._order_hash() of the request's order key.
    order_hash bigint NOT NULL,
    target callback.target_kind NOT NULL,
    state callback.callback_state NOT NULL DEFAULT 'pending'
        CONSTRAINT undone CHECK (state IN ('waiting', 'pending', 'held')),
    attempts int NOT NULL DEFAULT 0,
    leased_by int,
    last_http_status int,
    endpoint text NOT NULL,
    last_error text
) WITH (fillfactor = 50);
CREATE UNIQUE INDEX callbacks_undone_id ON callback.callbacks_undone (id);
CREATE INDEX callbacks_due ON callback.callbacks_undone (due_at, id) WHERE state = 'pending';
CREATE INDEX callbacks_order ON callback.callbacks_undone (order_hash, id);
CREATE INDEX callbacks_waiting ON callback.callbacks_undone (id) WHERE state = 'waiting';
COMMENT ON TABLE callback.callbacks_undone IS 'The queue: a row per callback not yet done (waiting, pending, held), its request in callback.requests.';
COMMENT ON COLUMN callback.callbacks_undone.due_at IS 'When the next attempt may be made.';
COMMENT ON COLUMN callback.callbacks_undone.leased_until IS 'A worker that claimed the row holds it until then; after that another may reclaim it.';

CREATE TABLE callback.callbacks_ended (
    id bigint NOT NULL,
    account_id bigint NOT NULL,
    state callback.callback_state NOT NULL CONSTRAINT done CHECK (state IN ('delivered', 'failed')),
    attempts int NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    last_http_status int,
    last_error text
);
CREATE UNIQUE INDEX callbacks_ended_id ON callback.callbacks_ended (id);
COMMENT ON TABLE callback.callbacks_ended IS 'A row per callback done that no attempt ended: canceled, unsendable when rendered, or given a done state by an administrator (callback.callbacks_done shows these with those an attempt ended).';

-- One index: by callback, as every reader looks attempts up, the id making it unique. An index
-- of the id alone besides cost each attempt an index entry more (BENCHMARKS.md, "Bytes per
-- callback") and nothing looks an attempt up by its id alone. The attempt that ended its
-- callback carries the outcome: its done row, without a row and an index entry of its own.
CREATE TABLE callback.deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY,
    callback_id bigint NOT NULL,
    attempt int NOT NULL,
    started_at timestamptz NOT NULL,
    duration interval NOT NULL,
    http_status int,
    response_excerpt text,
    error text,
    account_id bigint NOT NULL,
    outcome callback.callback_state CONSTRAINT done CHECK (outcome IN ('delivered', 'failed')),
    PRIMARY KEY (callback_id, id)
);
COMMENT ON TABLE callback.deliveries IS 'One row per HTTP attempt: when, how long, the status, a bounded excerpt of the response, the error. callback_id names its callback (no foreign key: the worker writes thousands a second).';
COMMENT ON COLUMN callback.deliveries.outcome IS 'delivered or failed on the attempt that ended its callback; NULL on the others, and once the callback is replayed.';

-- Every callback done, as one narrow row each: how it ended.
CREATE VIEW callback.callbacks_done WITH (security_invoker = true) AS
SELECT e.id, e.account_id, e.state, e.attempts, e.finished_at, e.last_http_status, e.last_error
FROM callback.callbacks_ended e
UNION ALL
SELECT d.callback_id, d.account_id, d.outcome, d.attempt, d.started_at + d.duration, d.http_status, d.error
FROM callback.deliveries d
WHERE d.outcome IS NOT NULL;
COMMENT ON VIEW callback.callbacks_done IS 'A row per callback delivered or failed for good, its request in callback.requests: the attempt that ended it (callback.deliveries), or its row of callbacks_ended. Kept for pg_callback.retention (delivered) or until replayed or purged (failed).';

-- Makes the done callbacks `ids` (of `accounts`; NULL: any) not done, for replay or an
-- administrator's change of state: removes their row of callbacks_ended, or the outcome of the
-- attempt that ended them. Returns those it reopened.
CREATE FUNCTION callback._reopen(ids bigint[], accounts bigint[]) RETURNS TABLE (account_id bigint, id bigint)
LANGUAGE sql AS $$
    WITH ended AS (
        DELETE FROM callback.callbacks_ended e
        WHERE e.id = ANY (ids) AND (accounts IS NULL OR e.account_id = ANY (accounts))
        RETURNING e.account_id, e.id
    ), attempted AS (
        UPDATE callback.deliveries d SET outcome = NULL
        WHERE d.callback_id = ANY (ids) AND d.outcome IS NOT NULL
          AND (accounts IS NULL OR d.account_id = ANY (accounts))
        RETURNING d.account_id, d.callback_id
    )
    SELECT * FROM ended UNION SELECT * FROM attempted
$$;

-- Credentials (auth_header, signing_secret) are left out: only callback.requests has them. The
-- parts join on the account too, as they would if the tables were distributed by account.
CREATE VIEW callback.callbacks WITH (security_invoker = true) AS
SELECT r.id, r.webhook_id, r.event, r.account_id, r.campaign_id, r.message_id, r.target, r.subscription_id,
       r.url, coalesce(u.endpoint, callback._endpoint(r.url)) AS endpoint, r.method,
       callback._headers_sent(r.headers, r.body IS NOT NULL) AS headers, callback._body(r.body) AS body, r.retry_policy,
       coalesce(r.order_key, callback._order_key(r.message_id, r.campaign_id, r.url)) AS order_key,
       coalesce(u.state, d.state) AS state,
       coalesce(u.attempts, d.attempts) AS attempts,
       u.due_at, u.leased_until, u.leased_by, r.recorded_at, d.finished_at,
       CASE WHEN u.id IS NOT NULL THEN u.last_http_status ELSE d.last_http_status END AS last_http_status,
       CASE WHEN u.id IS NOT NULL THEN u.last_error ELSE d.last_error END AS last_error,
       r.batch_size
FROM callback.requests r
LEFT JOIN callback.callbacks_undone u ON u.account_id = r.account_id AND u.id = r.id
LEFT JOIN callback.callbacks_done d ON d.account_id = r.account_id AND d.id = r.id;
COMMENT ON VIEW callback.callbacks IS 'Every callback recorded: its resolved URL, method, headers and body, fixed when its event happened (callback.requests), and its delivery state: in the queue (callbacks_undone: due_at, lease) or done (callbacks_done: finished_at).';
COMMENT ON COLUMN callback.callbacks.order_key IS 'Callbacks with the same key (same message or campaign, same URL) are delivered in id order: a later one waits while an earlier one is not done.';
COMMENT ON COLUMN callback.callbacks.endpoint IS 'Where its requests go: the URL''s scheme, host and port (the port left out when it is the scheme''s default), fixed when it was rendered (callback._endpoint). Workers limit requests in flight per endpoint; the operating views group by it.';
COMMENT ON COLUMN callback.callbacks.due_at IS 'When the next attempt may be made; NULL when done.';
COMMENT ON COLUMN callback.callbacks.batch_size IS 'A batch of events of one target ({"results": [...]}, sql/batching.sql): how many it carries, each a row of callback.batch_events; NULL for a callback of one event.';

-- An administrator may change a callback's state through the view, as the workers would:
-- make one due now, give one up, mark one delivered or failed; the row moves between the queue
-- and the done ones as its state says. What it sends, fixed when it was rendered, stays.
CREATE FUNCTION callback._callbacks_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM callback.callbacks_undone WHERE id = OLD.id;
        DELETE FROM callback.callbacks_ended WHERE id = OLD.id;
        DELETE FROM callback.deliveries WHERE callback_id = OLD.id;
        DELETE FROM callback.requests WHERE id = OLD.id;
        RETURN OLD;
    END IF;
    IF (NEW.id, NEW.webhook_id, NEW.event, NEW.account_id, NEW.campaign_id, NEW.message_id, NEW.target,
        NEW.subscription_id, NEW.url, NEW.endpoint, NEW.method, NEW.headers, NEW.body, NEW.retry_policy,
        NEW.order_key, NEW.recorded_at, NEW.batch_size)
       IS DISTINCT FROM
       (OLD.id, OLD.webhook_id, OLD.event, OLD.account_id, OLD.campaign_id, OLD.message_id, OLD.target,
        OLD.subscription_id, OLD.url, OLD.endpoint, OLD.method, OLD.headers, OLD.body, OLD.retry_policy,
        OLD.order_key, OLD.recorded_at, OLD.batch_size) THEN
        RAISE EXCEPTION 'what callback % sends was fixed when it was rendered', OLD.id
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Only its state, attempts, due time, lease, finish time and last answer can change.';
    END IF;
    -- Whatever said how it ended goes: it is not done, or done as the administrator says.
    PERFORM callback._reopen(ARRAY[OLD.id], NULL);
    IF NEW.state IN ('waiting', 'pending', 'held') THEN
        INSERT INTO callback.callbacks_undone AS u (
            id, account_id, campaign_id, target, state, attempts, due_at, leased_until, leased_by,
            last_http_status, last_error, endpoint, order_hash)
        VALUES (OLD.id, OLD.account_id, OLD.campaign_id, OLD.target, NEW.state, NEW.attempts,
                coalesce(NEW.due_at, now()), NEW.leased_until, NEW.leased_by, NEW.last_http_status,
                NEW.last_error, OLD.endpoint, callback._order_hash(OLD.order_key))
        ON CONFLICT (id) DO UPDATE
        SET state = excluded.state, attempts = excluded.attempts, due_at = excluded.due_at,
            leased_until = excluded.leased_until, leased_by = excluded.leased_by,
            last_http_status = excluded.last_http_status, last_error = excluded.last_error;
        NEW.finished_at := NULL;
    ELSE
        DELETE FROM callback.callbacks_undone WHERE id = OLD.id;
        INSERT INTO callback.callbacks_ended (id, account_id, state, attempts, finished_at, last_http_status, last_error)
        VALUES (OLD.id, OLD.account_id, NEW.state, NEW.attempts, coalesce(NEW.finished_at, now()),
                NEW.last_http_status, NEW.last_error);
        NEW.due_at := NULL;
        NEW.leased_until := NULL;
        NEW.leased_by := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER callbacks_changed INSTEAD OF UPDATE OR DELETE ON callback.callbacks
    FOR EACH ROW EXECUTE FUNCTION callback._callbacks_changed();


-- What the foreign key from callbacks to retry_policies would do, without its cost per insert.
CREATE FUNCTION callback._retry_policy_in_use() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM callback.requests r
               JOIN callback.callbacks_undone u ON u.account_id = r.account_id AND u.id = r.id
               WHERE r.retry_policy = OLD.name) THEN
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
