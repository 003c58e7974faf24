-- pg_callback 0.2.0 to 0.3.0: each callback's endpoint (scheme, host and port) computed once,
-- when it is rendered, and stored in its queue row for the claim, the per-endpoint limits and
-- the views;
-- the template variables of message events and the timestamps in bodies made by the same Rust
-- code as rendering's (callback._message_vars_of, callback._iso), and callback._endpoint too;
-- tenants change callbacks only through replay, retry_now and replay_all; signing secrets
-- rotate with an overlap (callback.rotate_signing_secret); endpoints have limits of requests
-- per second (callback.endpoint_limits, callback.account_endpoint_limits); callback.cancel();
-- client certificates (callback.client_certificates, callback.set_client_certificate);
-- endpoint health (callback.endpoints, callback.reset_endpoint); alert emails
-- (callback.alert_emails, callback.alert_summary); campaign reports uploaded to object storage
-- before campaign.complete (callback.campaign_reports); batched reports (callback.batching,
-- callback.batch_events, callbacks.batch_size); webhook-ids derived from the event when a
-- worker renders it (the column's comment says so); the callbacks table split into
-- callback.requests (what each sends, written once), the queue and the done callbacks, with
-- callback.callbacks a view of them (at the end), each request's body stored compressed.
-- Frozen with the release: the files it was made from (sql/queue.sql, events.sql, views.sql,
-- model.sql, delivery.sql, tenants.sql, secrets.sql, limits.sql, certificates.sql, health.sql,
-- emails.sql, reports.sql, batching.sql) go on changing for later versions. tests/integration/test_upgrade.py checks that
-- it leaves the schema a fresh install of 0.3.0 makes.
\echo Use "ALTER EXTENSION pg_callback UPDATE TO '0.3.0'" to load this file. \quit

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

REVOKE ALL ON FUNCTION callback._headers_kept(jsonb, bool), callback._headers_sent(jsonb, bool) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._headers_kept(jsonb, bool), callback._headers_sent(jsonb, bool)
    TO callback_admin, callback_tenant;
-- The order key of a callback of one event, which callback.requests does not store, and what
-- the queue orders by (sql/queue.sql).
CREATE FUNCTION callback._order_key(
	"message_id" bigint, /* Option < i64 > */
	"campaign_id" bigint, /* Option < i64 > */
	"url" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'order_key_wrapper';
REVOKE ALL ON FUNCTION callback._order_key(bigint, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._order_key(bigint, bigint, text) TO callback_admin, callback_tenant;
CREATE FUNCTION callback._order_hash(order_key text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT hashtextextended(order_key, 0) $$;
REVOKE ALL ON FUNCTION callback._order_hash(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._order_hash(text) TO callback_admin, callback_tenant;

-- Bodies as callback.requests stores them, compressed, and as they are sent (sql/queue.sql).
CREATE FUNCTION callback._packed_body(
	"body" TEXT /* &str */
) RETURNS bytea /* alloc::vec::Vec<u8> */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'packed_body_wrapper';
CREATE FUNCTION callback._body(
	"stored" bytea /* &[u8] */
) RETURNS TEXT /* alloc::string::String */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'body_wrapper';
REVOKE ALL ON FUNCTION callback._packed_body(text), callback._body(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._packed_body(text), callback._body(bytea) TO callback_admin, callback_tenant;

-- Functions that were SQL and are now the library's, and the one 0.3.0 adds.
CREATE OR REPLACE FUNCTION callback._endpoint(
	"url" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'endpoint_wrapper';
CREATE OR REPLACE FUNCTION callback._iso(
	"ts" timestamp with time zone /* TimestampWithTimeZone */
) RETURNS TEXT /* Option < String > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'iso_wrapper';
CREATE FUNCTION callback._message_vars_of(
	"message" jsonb, /* JsonB */
	"attributes" jsonb, /* Option < JsonB > */
	"env" jsonb, /* Option < JsonB > */
	"list_id" bigint /* Option < i64 > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'message_vars_of_wrapper';
REVOKE ALL ON FUNCTION callback._message_vars_of(jsonb, jsonb, jsonb, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._message_vars_of(jsonb, jsonb, jsonb, bigint) TO callback_admin, callback_tenant;

CREATE OR REPLACE FUNCTION callback._message_vars(message callback.messages, campaign callback.campaigns) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT callback._message_vars_of(to_jsonb(message), member.attributes, campaign.env,
                                     coalesce(campaign.list_id, member.list_id))
    FROM (SELECT NULL) AS one
    LEFT JOIN callback.members member ON member.id = message.member_id
$$;

-- Tenants no longer write the columns the workers own (state, attempts, lease, due time):
-- replay, retry_now and replay_all change them as the extension's owner, for the accounts the
-- calling role acts for.
CREATE FUNCTION callback._accounts_of(acting name) RETURNS bigint[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pg_has_role(session_user, acting, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to act as role "%"', acting USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_has_role(acting, 'callback_admin', 'MEMBER') THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT coalesce(array_agg(r.account_id), '{}') FROM callback.account_roles r
            WHERE EXISTS (SELECT FROM pg_roles o WHERE o.rolname = r.role_name AND pg_has_role(acting, o.oid, 'MEMBER')));
END $$;

CREATE FUNCTION callback._replay(callback_id bigint, acting name)
RETURNS TABLE (id bigint, webhook_id uuid, state callback.callback_state, attempts int, due_at timestamptz,
               finished_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    accounts bigint[] := callback._accounts_of(acting);
BEGIN
    WITH gone AS MATERIALIZED (
        SELECT * FROM callback._reopen(ARRAY[_replay.callback_id], accounts)
    )
    INSERT INTO callback.callbacks_undone (id, account_id, campaign_id, target, state, endpoint, order_hash)
    SELECT r.id, r.account_id, r.campaign_id, r.target, 'pending', callback._endpoint(r.url),
           callback._order_hash(coalesce(r.order_key, callback._order_key(r.message_id, r.campaign_id, r.url)))
    FROM gone JOIN callback.requests r ON r.account_id = gone.account_id AND r.id = gone.id;
    IF NOT FOUND THEN
        PERFORM FROM callback.callbacks c
        WHERE c.id = _replay.callback_id AND (accounts IS NULL OR c.account_id = ANY (accounts));
        IF NOT FOUND THEN
            RAISE EXCEPTION 'callback % does not exist', callback_id USING ERRCODE = 'undefined_object';
        END IF;
        RAISE EXCEPTION 'callback % is not done yet', callback_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only failed or delivered callbacks can be replayed.';
    END IF;
    SELECT c.id, c.webhook_id, c.state, c.attempts, c.due_at, c.finished_at
    INTO id, webhook_id, state, attempts, due_at, finished_at
    FROM callback.callbacks c WHERE c.id = _replay.callback_id;
    PERFORM callback._wake_on_commit();
    RETURN NEXT;
END $$;

CREATE FUNCTION callback._retry_now(callback_id bigint, acting name) RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    accounts bigint[] := callback._accounts_of(acting);
    current_state callback.callback_state;
BEGIN
    UPDATE callback.callbacks_undone c SET due_at = now()
    WHERE c.id = _retry_now.callback_id AND c.state = 'pending' AND c.leased_until IS NULL
      AND (accounts IS NULL OR c.account_id = ANY (accounts));
    IF FOUND THEN
        PERFORM callback._wake_on_commit();
        RETURN now();
    END IF;
    SELECT c.state INTO current_state FROM callback.callbacks c
    WHERE c.id = _retry_now.callback_id AND (accounts IS NULL OR c.account_id = ANY (accounts));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'callback % does not exist', callback_id USING ERRCODE = 'undefined_object';
    END IF;
    RAISE EXCEPTION 'callback % is % and cannot be sent now', callback_id,
        CASE WHEN current_state = 'pending' THEN 'being sent' ELSE current_state::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = CASE current_state
                  WHEN 'waiting' THEN 'It waits for an earlier callback with the same URL and message; send that one.'
                  WHEN 'held' THEN 'Its campaign''s callbacks are disabled: callback.enable_campaign_callbacks().'
                  WHEN 'pending' THEN 'A worker is sending it now.'
                  ELSE 'It is done: callback.replay() sends it again.' END;
END $$;

CREATE FUNCTION callback._replay_all(campaign_id bigint, finished_from timestamptz, finished_to timestamptz,
                                     state callback.callback_state, acting name)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET enable_nestloop = off AS $$
DECLARE
    accounts bigint[] := callback._accounts_of(acting);
    replayed bigint;
BEGIN
    IF _replay_all.state IS NULL OR _replay_all.state NOT IN ('failed', 'delivered') THEN
        RAISE EXCEPTION 'only failed or delivered callbacks can be replayed, not %', coalesce(_replay_all.state::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF _replay_all.campaign_id IS NOT NULL THEN
        PERFORM FROM callback.campaigns c
        WHERE c.id = _replay_all.campaign_id AND (accounts IS NULL OR c.account_id = ANY (accounts));
        IF NOT FOUND THEN
            RAISE EXCEPTION 'campaign % does not exist', campaign_id USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
    WITH chosen AS (
        SELECT d.id, r.account_id, r.campaign_id, r.target, callback._endpoint(r.url) AS endpoint,
               callback._order_hash(k.order_key) AS order_hash,
               min(d.id) OVER (PARTITION BY k.order_key) AS first
        FROM callback.callbacks_done d
        JOIN callback.requests r ON r.account_id = d.account_id AND r.id = d.id,
             LATERAL (SELECT coalesce(r.order_key, callback._order_key(r.message_id, r.campaign_id, r.url)) AS order_key) k
        WHERE d.state = _replay_all.state
          AND (accounts IS NULL OR d.account_id = ANY (accounts))
          AND (_replay_all.campaign_id IS NULL OR r.campaign_id = _replay_all.campaign_id)
          AND (_replay_all.finished_from IS NULL OR d.finished_at >= _replay_all.finished_from)
          AND (_replay_all.finished_to IS NULL OR d.finished_at < _replay_all.finished_to)
    ), busy AS (
        SELECT DISTINCT u.order_hash FROM callback.callbacks_undone u JOIN chosen USING (order_hash)
    ), reopened AS MATERIALIZED (
        SELECT o.id FROM callback._reopen(ARRAY(SELECT id FROM chosen), accounts) o
    )
    INSERT INTO callback.callbacks_undone (id, account_id, campaign_id, target, state, endpoint, order_hash)
    SELECT chosen.id, chosen.account_id, chosen.campaign_id, chosen.target,
           CASE WHEN chosen.id = chosen.first AND busy.order_hash IS NULL THEN 'pending' ELSE 'waiting' END
               ::callback.callback_state,
           chosen.endpoint, chosen.order_hash
    FROM chosen JOIN reopened USING (id) LEFT JOIN busy USING (order_hash);
    GET DIAGNOSTICS replayed = ROW_COUNT;
    IF replayed > 0 THEN
        PERFORM callback._wake_on_commit();
    END IF;
    RETURN replayed;
END $$;

CREATE OR REPLACE FUNCTION callback.replay(callback_id bigint)
RETURNS TABLE (id bigint, webhook_id uuid, state callback.callback_state, attempts int, due_at timestamptz,
               finished_at timestamptz)
LANGUAGE sql AS $$ SELECT * FROM callback._replay(callback_id, current_user) $$;

CREATE OR REPLACE FUNCTION callback.retry_now(callback_id bigint) RETURNS timestamptz
LANGUAGE sql AS $$ SELECT callback._retry_now(callback_id, current_user) $$;

CREATE OR REPLACE FUNCTION callback.replay_all(campaign_id bigint DEFAULT NULL, finished_from timestamptz DEFAULT NULL,
                                    finished_to timestamptz DEFAULT NULL, state callback.callback_state DEFAULT 'failed')
RETURNS bigint
LANGUAGE sql AS $$ SELECT callback._replay_all(campaign_id, finished_from, finished_to, state, current_user) $$;
REVOKE ALL ON FUNCTION callback._accounts_of(name), callback._replay(bigint, name), callback._retry_now(bigint, name),
    callback._replay_all(bigint, timestamptz, timestamptz, callback.callback_state, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._accounts_of(name), callback._replay(bigint, name), callback._retry_now(bigint, name),
    callback._replay_all(bigint, timestamptz, timestamptz, callback.callback_state, name) TO callback_admin, callback_tenant;

-- Signing-secret rotation (sql/secrets.sql).
CREATE TABLE callback.signing_secret_overlaps (
    account_id bigint NOT NULL REFERENCES callback.accounts ON DELETE CASCADE,
    secret text NOT NULL,
    other text NOT NULL,
    until timestamptz NOT NULL,
    PRIMARY KEY (account_id, secret, other)
);
COMMENT ON TABLE callback.signing_secret_overlaps IS 'Secrets in their rotation overlap: a request signed with secret also carries a signature with other, until then. Two rows per rotation, one each way. Written by callback.rotate_signing_secret(); unreadable by tenants.';
SELECT pg_catalog.pg_extension_config_dump('callback.signing_secret_overlaps', '');

-- As the extension's owner, for the accounts the calling role acts for (sql/delivery.sql says
-- how): tenants may not read the secrets it keeps.
CREATE FUNCTION callback._rotate_signing_secret(target text, target_id bigint, overlap interval, acting name)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    accounts bigint[] := callback._accounts_of(acting);
    owner_account bigint;
    old_secret text;
    new_secret text := callback.generate_signing_secret();
    ends timestamptz := now() + coalesce(overlap, current_setting('pg_callback.secret_overlap')::interval);
BEGIN
    IF overlap < interval '0' THEN
        RAISE EXCEPTION 'overlap % is negative', overlap USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF target IS NULL OR target NOT IN ('list', 'campaign', 'subscription') THEN
        RAISE EXCEPTION 'cannot rotate the signing secret of "%"', target
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The targets with a signing secret are list, campaign and subscription.';
    END IF;
    EXECUTE format('SELECT account_id, signing_secret FROM callback.%I WHERE id = $1 AND ($2 IS NULL OR account_id = ANY ($2)) FOR UPDATE',
                   target || 's')
        INTO owner_account, old_secret USING target_id, accounts;
    IF owner_account IS NULL THEN
        RAISE EXCEPTION '% % does not exist', target, target_id USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('UPDATE callback.%I SET signing_secret = $1 WHERE id = $2', target || 's') USING new_secret, target_id;
    IF old_secret IS NOT NULL THEN
        DELETE FROM callback.signing_secret_overlaps o WHERE o.account_id = owner_account AND o.until < now();
        INSERT INTO callback.signing_secret_overlaps (account_id, secret, other, until)
        VALUES (owner_account, new_secret, old_secret, ends), (owner_account, old_secret, new_secret, ends)
        ON CONFLICT ON CONSTRAINT signing_secret_overlaps_pkey DO UPDATE SET until = EXCLUDED.until;
    END IF;
    RETURN new_secret;
END $$;

CREATE FUNCTION callback.rotate_signing_secret(target text, target_id bigint, overlap interval DEFAULT NULL)
RETURNS text
LANGUAGE sql AS $$ SELECT callback._rotate_signing_secret(target, target_id, overlap, current_user) $$;
COMMENT ON FUNCTION callback.rotate_signing_secret(text, bigint, interval) IS
    'Gives a list, campaign or subscription a new signing secret and returns it; until the overlap ends (pg_callback.secret_overlap, 24 hours, unless given) requests signed with the old or the new secret carry both signatures.';
ALTER TABLE callback.signing_secret_overlaps ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON callback.signing_secret_overlaps
    USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]));
GRANT ALL ON callback.signing_secret_overlaps TO callback_admin;
REVOKE ALL ON FUNCTION callback.rotate_signing_secret(text, bigint, interval),
    callback._rotate_signing_secret(text, bigint, interval, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback.rotate_signing_secret(text, bigint, interval),
    callback._rotate_signing_secret(text, bigint, interval, name) TO callback_admin, callback_tenant;

-- Requests per second per endpoint (sql/limits.sql).
CREATE TABLE callback.endpoint_limits (
    endpoint text PRIMARY KEY CONSTRAINT endpoint_as_callback_endpoint_writes_it CHECK (endpoint = callback._endpoint(endpoint)),
    requests_per_second numeric NOT NULL CONSTRAINT requests_per_second_from_0_01_to_100000
        CHECK (requests_per_second BETWEEN 0.01 AND 100000)
);
COMMENT ON TABLE callback.endpoint_limits IS 'An administrator''s limit of requests per second to an endpoint (scheme, host and port: callback._endpoint(url)), for every account''s callbacks.';

CREATE TABLE callback.account_endpoint_limits (
    account_id bigint NOT NULL REFERENCES callback.accounts ON DELETE CASCADE,
    endpoint text NOT NULL CONSTRAINT endpoint_as_callback_endpoint_writes_it CHECK (endpoint = callback._endpoint(endpoint)),
    requests_per_second numeric NOT NULL CONSTRAINT requests_per_second_from_0_01_to_100000
        CHECK (requests_per_second BETWEEN 0.01 AND 100000),
    PRIMARY KEY (account_id, endpoint)
);
COMMENT ON TABLE callback.account_endpoint_limits IS 'An account''s own limit of requests per second to an endpoint, for its callbacks (beside the administrator''s, if any).';

SELECT pg_catalog.pg_extension_config_dump('callback.endpoint_limits', '');
SELECT pg_catalog.pg_extension_config_dump('callback.account_endpoint_limits', '');
ALTER TABLE callback.account_endpoint_limits ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON callback.account_endpoint_limits
    USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]));
GRANT ALL ON callback.endpoint_limits, callback.account_endpoint_limits TO callback_admin;
GRANT SELECT ON callback.endpoint_limits TO callback_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON callback.account_endpoint_limits TO callback_tenant;

-- Canceling a callback not sent yet (sql/views.sql).
-- A callback not yet sent for good is given up: failed, with who canceled it as its error; the
-- next one of its order key that waited behind it goes. Not one on the wire (its worker
-- writes how it went) nor one done (replay sends that again).
CREATE FUNCTION callback._cancel(callback_id bigint, acting name) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    accounts bigint[] := callback._accounts_of(acting);
    canceled record;
    current_state callback.callback_state;
BEGIN
    WITH gone AS (
        DELETE FROM callback.callbacks_undone c
        WHERE c.id = _cancel.callback_id AND (accounts IS NULL OR c.account_id = ANY (accounts))
          AND (c.leased_until IS NULL OR c.leased_until < now())
        RETURNING c.id, c.account_id, c.attempts, c.last_http_status, c.order_hash
    ), done AS (
        INSERT INTO callback.callbacks_ended (id, account_id, state, attempts, last_http_status, last_error)
        SELECT g.id, g.account_id, 'failed', g.attempts, g.last_http_status, format('canceled by %s', acting)
        FROM gone g
    )
    SELECT * INTO canceled FROM gone;
    IF FOUND THEN
        UPDATE callback.callbacks_undone w SET state = 'pending', due_at = now()
        WHERE w.id = (SELECT min(n.id) FROM callback.callbacks_undone n
                      WHERE n.order_hash = canceled.order_hash AND n.state = 'waiting')
          AND NOT EXISTS (SELECT FROM callback.callbacks_undone b
                          WHERE b.order_hash = canceled.order_hash AND b.state IN ('pending', 'held'));
        PERFORM callback._wake_on_commit();
        RETURN;
    END IF;
    SELECT c.state INTO current_state FROM callback.callbacks c
    WHERE c.id = _cancel.callback_id AND (accounts IS NULL OR c.account_id = ANY (accounts));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'callback % does not exist', callback_id USING ERRCODE = 'undefined_object';
    END IF;
    RAISE EXCEPTION 'callback % is % and cannot be canceled', callback_id,
        CASE WHEN current_state = 'pending' THEN 'being sent' ELSE current_state::text END
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = CASE WHEN current_state = 'pending' THEN 'A worker is sending it now; its result is written when it answers.'
                          ELSE 'It is done already.' END;
END $$;

CREATE FUNCTION callback.cancel(callback_id bigint) RETURNS void
LANGUAGE sql AS $$ SELECT callback._cancel(callback_id, current_user) $$;
COMMENT ON FUNCTION callback.cancel(bigint) IS
    'Gives up a callback not sent yet (waiting, pending, held): failed, with who canceled it; the next one of its message and URL goes.';
REVOKE ALL ON FUNCTION callback._cancel(bigint, name), callback.cancel(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._cancel(bigint, name), callback.cancel(bigint) TO callback_admin, callback_tenant;

-- Client certificates (mutual TLS), sql/certificates.sql.
CREATE FUNCTION callback._check_client_certificate(
	"certificate" TEXT, /* &str */
	"private_key" TEXT /* &str */
) RETURNS void
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_client_certificate_wrapper';
CREATE TABLE callback.client_certificates (
    account_id bigint NOT NULL REFERENCES callback.accounts ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    target text NOT NULL CONSTRAINT target_account_list_or_campaign CHECK (target IN ('account', 'list', 'campaign')),
    target_id bigint NOT NULL,
    certificate text NOT NULL,
    private_key text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id),
    UNIQUE (account_id, target, target_id)
);
COMMENT ON TABLE callback.client_certificates IS 'The client certificate (PEM, with any intermediates) and private key (PEM, unencrypted) presented for an account''s, a list''s or a campaign''s callbacks. Set with callback.set_client_certificate(); the private key is unreadable by tenants.';
COMMENT ON COLUMN callback.client_certificates.target_id IS 'The account''s, list''s or campaign''s id.';
SELECT pg_catalog.pg_extension_config_dump('callback.client_certificates', '');
SELECT pg_catalog.pg_extension_config_dump(pg_get_serial_sequence('callback.client_certificates', 'id')::regclass, '');

-- The account a target (an account, list, campaign or subscription) belongs to; NULL when
-- there is none such, or the caller may not see it. Client certificates and batching
-- (sql/batching.sql) are set per target.
CREATE FUNCTION callback._target_account(target text, target_id bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE _target_account.target
        WHEN 'account' THEN (SELECT a.id FROM callback.accounts a WHERE a.id = _target_account.target_id)
        WHEN 'list' THEN (SELECT l.account_id FROM callback.lists l WHERE l.id = _target_account.target_id)
        WHEN 'campaign' THEN (SELECT c.account_id FROM callback.campaigns c WHERE c.id = _target_account.target_id)
        WHEN 'subscription' THEN (SELECT s.account_id FROM callback.subscriptions s WHERE s.id = _target_account.target_id)
    END
$$;

-- The account of a target of one of `kinds` (a set_* function's), for the caller: 22023 for
-- another kind of target, 42704 when there is none such or the caller may not see it.
CREATE FUNCTION callback._target_owner(target text, target_id bigint, kinds text[]) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    owner_account bigint := callback._target_account(target, target_id);
BEGIN
    IF target IS NULL OR NOT target = ANY (kinds) THEN
        RAISE EXCEPTION 'target must be % or %, not %', array_to_string(kinds[:cardinality(kinds) - 1], ', '),
            kinds[cardinality(kinds)], coalesce(target, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF owner_account IS NULL THEN
        RAISE EXCEPTION '% % does not exist', target, coalesce(target_id::text, 'NULL') USING ERRCODE = 'undefined_object';
    END IF;
    RETURN owner_account;
END $$;

-- Raises 42704 when the target is not one of the account's.
CREATE FUNCTION callback._check_target(account_id bigint, target text, target_id bigint) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF callback._target_account(target, target_id) IS DISTINCT FROM account_id THEN
        RAISE EXCEPTION '% % of account % does not exist', target, target_id, account_id
            USING ERRCODE = 'undefined_object';
    END IF;
END $$;

-- Deletes the rows of table TG_ARGV[0] set for the deleted row as target TG_ARGV[1]: a list's,
-- campaign's or subscription's settings go with it.
CREATE FUNCTION callback._drop_target_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM callback.%I t WHERE t.account_id = $1 AND t.target = $2 AND t.target_id = $3', TG_ARGV[0])
        USING OLD.account_id, TG_ARGV[1], OLD.id;
    RETURN NULL;
END $$;

-- Raises 22023 when the certificate and key are not a usable pair, 42704 when the target is
-- not one of the account's; stamps updated_at.
CREATE FUNCTION callback._check_client_certificate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM callback._check_client_certificate(NEW.certificate, NEW.private_key);
    PERFORM callback._check_target(NEW.account_id, NEW.target, NEW.target_id);
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER client_certificates_check BEFORE INSERT OR UPDATE ON callback.client_certificates
    FOR EACH ROW EXECUTE FUNCTION callback._check_client_certificate();

-- The certificate a callback of this account, campaign and target presents, and its version
-- (updated_at in microseconds, telling the workers when to read it again); NULL for none.
CREATE FUNCTION callback._client_certificate(account_id bigint, campaign_id bigint, target callback.target_kind)
RETURNS bigint[]
LANGUAGE sql STABLE AS $$
    SELECT ARRAY[k.id, (extract(epoch FROM k.updated_at) * 1000000)::bigint]
    FROM callback.client_certificates k
    WHERE k.account_id = _client_certificate.account_id
      AND (k.target = 'account' AND k.target_id = _client_certificate.account_id
           OR _client_certificate.target IN ('campaign', 'campaign_event', 'alert')
              AND k.target = 'campaign' AND k.target_id = _client_certificate.campaign_id
           OR _client_certificate.target IN ('campaign', 'campaign_event', 'alert', 'list')
              AND k.target = 'list'
              AND k.target_id = (SELECT c.list_id FROM callback.campaigns c WHERE c.id = _client_certificate.campaign_id))
    ORDER BY k.target = 'campaign' DESC, k.target = 'list' DESC
    LIMIT 1
$$;

-- A list's or campaign's certificate goes with it.
CREATE TRIGGER lists_drop_client_certificate AFTER DELETE ON callback.lists
    FOR EACH ROW EXECUTE FUNCTION callback._drop_target_rows('client_certificates', 'list');
CREATE TRIGGER campaigns_drop_client_certificate AFTER DELETE ON callback.campaigns
    FOR EACH ROW EXECUTE FUNCTION callback._drop_target_rows('client_certificates', 'campaign');

CREATE FUNCTION callback.set_client_certificate(target text, target_id bigint, certificate text, private_key text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    owner_account bigint := callback._target_owner(target, target_id, '{account, list, campaign}');
    kept bigint;
BEGIN
    UPDATE callback.client_certificates k
    SET certificate = set_client_certificate.certificate, private_key = set_client_certificate.private_key
    WHERE k.account_id = owner_account AND k.target = set_client_certificate.target
      AND k.target_id = set_client_certificate.target_id
    RETURNING k.id INTO kept;
    IF NOT FOUND THEN
        INSERT INTO callback.client_certificates (account_id, target, target_id, certificate, private_key)
        VALUES (owner_account, target, target_id, certificate, private_key)
        RETURNING id INTO kept;
    END IF;
    RETURN kept;
END $$;
COMMENT ON FUNCTION callback.set_client_certificate(text, bigint, text, text) IS
    'Sets the client certificate (PEM, with any intermediates) and private key (PEM) an account, list or campaign presents to receivers that ask for one, replacing the one it had (callbacks not yet sent present the new one); returns its id. Remove it with DELETE FROM callback.client_certificates.';
ALTER TABLE callback.client_certificates ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON callback.client_certificates
    USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]));
GRANT ALL ON callback.client_certificates TO callback_admin;
GRANT ALL ON SEQUENCE callback.client_certificates_id_seq TO callback_admin;
GRANT USAGE ON SEQUENCE callback.client_certificates_id_seq TO callback_tenant;
GRANT INSERT, UPDATE, DELETE ON callback.client_certificates TO callback_tenant;
GRANT SELECT (account_id, id, target, target_id, certificate, updated_at) ON callback.client_certificates TO callback_tenant;
REVOKE ALL ON FUNCTION callback._check_client_certificate(text, text), callback._check_client_certificate(),
    callback._target_account(text, bigint), callback._target_owner(text, bigint, text[]), callback._check_target(bigint, text, bigint),
    callback._drop_target_rows(), callback._client_certificate(bigint, bigint, callback.target_kind),
    callback.set_client_certificate(text, bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._check_client_certificate(text, text), callback._check_client_certificate(),
    callback._target_account(text, bigint), callback._target_owner(text, bigint, text[]), callback._check_target(bigint, text, bigint),
    callback._drop_target_rows(), callback._client_certificate(bigint, bigint, callback.target_kind),
    callback.set_client_certificate(text, bigint, text, text) TO callback_admin, callback_tenant;

-- Endpoint health, sql/health.sql; the endpoints' view shows it.
CREATE TABLE callback.endpoints (
    endpoint text PRIMARY KEY,
    state text NOT NULL DEFAULT 'up' CONSTRAINT state_up_or_down CHECK (state IN ('up', 'down')),
    since timestamptz NOT NULL DEFAULT now(),
    failures int NOT NULL DEFAULT 0,
    last_error text,
    probe_interval interval,
    next_probe_at timestamptz,
    probe_callback_id bigint,
    probe_until timestamptz
);
COMMENT ON TABLE callback.endpoints IS 'What the workers know of each endpoint that has failed: up or down since when, failures since its last answer, the last error; down, when the next probe may go and the probe under way. Written by the workers; callback.reset_endpoint() brings one up.';
COMMENT ON COLUMN callback.endpoints.probe_callback_id IS 'The callback sent as the probe, until probe_until (its lease).';

-- The callbacks of an endpoint waiting for its probe go at once (those due later than it
-- keep their own time; those a worker holds locked are its to write); wakes the workers at
-- commit.
CREATE FUNCTION callback._unpark(endpoint text) RETURNS void
LANGUAGE sql AS $$
    UPDATE callback.callbacks_undone c SET due_at = now()
    FROM (SELECT u.id
          FROM callback.callbacks_undone u
          JOIN callback.endpoints e ON e.endpoint = u.endpoint
          WHERE e.endpoint = _unpark.endpoint AND u.state = 'pending' AND u.leased_until IS NULL
            AND u.due_at > now() AND u.due_at <= e.next_probe_at
          FOR UPDATE OF u SKIP LOCKED) w
    WHERE c.id = w.id;
    SELECT callback._wake_on_commit();
$$;

CREATE FUNCTION callback.reset_endpoint(endpoint text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM callback._unpark(endpoint);
    UPDATE callback.endpoints e
    SET state = 'up', since = CASE WHEN e.state = 'up' THEN e.since ELSE now() END, failures = 0,
        probe_interval = NULL, next_probe_at = NULL, probe_callback_id = NULL, probe_until = NULL
    WHERE e.endpoint = reset_endpoint.endpoint;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION callback.reset_endpoint(text) IS
    'Brings an endpoint (scheme, host and port, as callback.endpoint_health shows it) up: its failures forgotten, its waiting callbacks due at once. False when the workers know nothing of it.';

-- For callback.endpoint_health, which tenants read: every endpoint's state (the view shows
-- those of their own callbacks only).
CREATE FUNCTION callback._endpoint_states()
RETURNS TABLE (endpoint text, state text, since timestamptz, failures int, last_error text, next_probe_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.endpoint, e.state, e.since, e.failures, e.last_error, e.next_probe_at FROM callback.endpoints e
$$;

REVOKE ALL ON FUNCTION callback._unpark(text), callback.reset_endpoint(text), callback._endpoint_states() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._unpark(text), callback.reset_endpoint(text), callback._endpoint_states() TO callback_admin;
GRANT EXECUTE ON FUNCTION callback._endpoint_states() TO callback_tenant;
GRANT ALL ON callback.endpoints TO callback_admin;

-- Alert emails, sql/emails.sql.
CREATE TABLE callback.alert_emails (
    account_id bigint NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    alert_id bigint NOT NULL,
    address text NOT NULL,
    state text NOT NULL DEFAULT 'pending'
        CONSTRAINT state_pending_sent_failed_or_not_sent CHECK (state IN ('pending', 'sent', 'failed', 'not_sent')),
    attempts int NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    leased_by int,
    sent_at timestamptz,
    last_error text,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX alert_emails_due ON callback.alert_emails (due_at) WHERE state = 'pending';
CREATE INDEX alert_emails_alert ON callback.alert_emails (alert_id);
COMMENT ON TABLE callback.alert_emails IS 'One email per address of an alert''s notification list: pending (due_at, attempts), sent, failed (the relay refused it, or every attempt failed), or not_sent (no relay was set). Written by the workers.';
SELECT pg_catalog.pg_extension_config_dump('callback.alert_emails', '');
SELECT pg_catalog.pg_extension_config_dump(pg_get_serial_sequence('callback.alert_emails', 'id')::regclass, '');

CREATE FUNCTION callback._queue_alert_emails() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO callback.alert_emails (account_id, alert_id, address)
    SELECT DISTINCT NEW.account_id, NEW.id, a FROM unnest(NEW.notification_list) a;
    IF FOUND THEN
        PERFORM callback._wake_on_commit();
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alerts_queue_emails AFTER INSERT ON callback.alerts
    FOR EACH ROW EXECUTE FUNCTION callback._queue_alert_emails();

CREATE VIEW callback.alert_summary WITH (security_invoker = true) AS
SELECT a.id AS alert_id, a.account_id, a.campaign_id, a.callback_id, a.raised_at, a.reason,
       count(e.id) AS emails,
       count(e.id) FILTER (WHERE e.state = 'sent') AS emails_sent,
       count(e.id) FILTER (WHERE e.state = 'pending') AS emails_pending,
       count(e.id) FILTER (WHERE e.state IN ('failed', 'not_sent')) AS emails_not_sent,
       (array_agg(e.last_error ORDER BY e.id) FILTER (WHERE e.state <> 'sent' AND e.last_error IS NOT NULL))[1]
           AS email_error
FROM callback.alerts a
LEFT JOIN callback.alert_emails e ON e.account_id = a.account_id AND e.alert_id = a.id
GROUP BY a.id;
COMMENT ON VIEW callback.alert_summary IS 'Each alert and what became of its emails: how many, sent, still being tried, not sent (failed, or no relay), and why the first not sent was not.';
ALTER TABLE callback.alert_emails ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON callback.alert_emails
    USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]));
GRANT ALL ON callback.alert_emails TO callback_admin;
GRANT ALL ON SEQUENCE callback.alert_emails_id_seq TO callback_admin;
GRANT USAGE ON SEQUENCE callback.alert_emails_id_seq TO callback_tenant;
GRANT ALL ON callback.alert_summary TO callback_admin;
GRANT SELECT ON callback.alert_emails, callback.alert_summary TO callback_tenant;
REVOKE ALL ON FUNCTION callback._queue_alert_emails() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._queue_alert_emails() TO callback_admin, callback_tenant;

-- Campaign reports in object storage, sql/reports.sql; the report's lines streamed
-- (sql/delivery.sql); campaign.complete waits for the upload (sql/events.sql).
CREATE FUNCTION callback._report_storage() RETURNS bool
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'report_storage_wrapper';
-- A campaign's report as CSV lines (with their CRLF), the header first: streamed by the
-- workers to object storage (sql/reports.sql), gathered by callback.campaign_report_csv().
CREATE FUNCTION callback._campaign_report_lines(campaign_id bigint) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT line FROM (
        SELECT 0 AS n, 'message_id,member_id,destination,channel,status,final,attempts,attempt_ids,error_code,error_message,callback_data,updated_at'
                       || E'\r\n' AS line
        UNION ALL
        SELECT r.message_id,
               concat_ws(',', r.message_id, callback._csv(r.member_id::text), callback._csv(r.destination), r.channel,
                         callback._csv(r.status), r.final, r.attempts, array_to_string(r.attempt_ids, ' '),
                         callback._csv(r.error_code), callback._csv(r.error_message), callback._csv(r.callback_data),
                         callback._iso(r.updated_at)) || E'\r\n'
        FROM callback.campaign_report(_campaign_report_lines.campaign_id) r
    ) lines
    ORDER BY n
$$;

CREATE OR REPLACE FUNCTION callback.campaign_report_csv(campaign_id bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(l.line, '' ORDER BY l.n)
    FROM callback._campaign_report_lines(campaign_report_csv.campaign_id) WITH ORDINALITY AS l(line, n)
$$;
CREATE TABLE callback.campaign_reports (
    account_id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    state text NOT NULL DEFAULT 'pending' CONSTRAINT state_pending_uploaded_or_failed
        CHECK (state IN ('pending', 'uploaded', 'failed')),
    complete_data jsonb NOT NULL,
    attempts int NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    leased_by int,
    object_key text,
    bytes bigint,
    uploaded_at timestamptz,
    last_error text,
    PRIMARY KEY (account_id, campaign_id)
);
CREATE INDEX campaign_reports_due ON callback.campaign_reports (due_at) WHERE state = 'pending';
COMMENT ON TABLE callback.campaign_reports IS 'Each ended campaign''s report on its way to object storage: pending (due_at, attempts, last_error), uploaded (object_key, bytes) or failed; complete_data is the campaign.complete event''s data, recorded with report_url once the upload is done. Written by the workers.';
COMMENT ON COLUMN callback.campaign_reports.complete_data IS 'The data of the campaign.complete event waiting for the report.';
SELECT pg_catalog.pg_extension_config_dump('callback.campaign_reports', '');

CREATE FUNCTION callback._queue_report(account_id bigint, campaign_id bigint, data jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO callback.campaign_reports AS r (account_id, campaign_id, complete_data)
    VALUES (account_id, campaign_id, data)
    ON CONFLICT (account_id, campaign_id) DO UPDATE
    SET state = 'pending', complete_data = EXCLUDED.complete_data, attempts = 0, due_at = now(),
        leased_until = NULL, leased_by = NULL, last_error = NULL;
    SELECT callback._wake_on_commit();
$$;

-- The worker's last word on a report: uploaded (url: its link) or failed for good (error);
-- records the campaign.complete event waiting for it, with report_url (and report_error).
CREATE FUNCTION callback._report_done(account_id bigint, campaign_id bigint, url text, error text,
                                      object_key text, bytes bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    report callback.campaign_reports;
    campaign callback.campaigns;
BEGIN
    UPDATE callback.campaign_reports r
    SET state = CASE WHEN url IS NULL THEN 'failed' ELSE 'uploaded' END,
        leased_until = NULL, leased_by = NULL, last_error = error, object_key = _report_done.object_key, bytes = _report_done.bytes,
        uploaded_at = CASE WHEN url IS NULL THEN NULL ELSE now() END
    WHERE r.account_id = _report_done.account_id AND r.campaign_id = _report_done.campaign_id AND r.state = 'pending'
    RETURNING * INTO report;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO campaign FROM callback.campaigns c WHERE c.id = _report_done.campaign_id;
    IF NOT FOUND THEN
        RETURN;  -- deleted since it ended: nothing to report to
    END IF;
    PERFORM callback._record('campaign.complete', campaign, NULL, report.account_id, NULL, callback._campaign_vars(campaign),
        report.complete_data || jsonb_build_object('report_url', url)
        || CASE WHEN error IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('report_error', error) END);
END $$;

-- campaign.complete: a campaign ended; the data counts its messages by status. With report
-- storage set (pg_callback.report_bucket), the event waits for the report's upload
-- (sql/reports.sql), which records it with the report's link. As the extension's owner: the
-- tenant ending a campaign may not write the workers' queue of reports itself.
CREATE OR REPLACE FUNCTION callback._campaign_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    outcomes jsonb;
    recipients bigint;
    data jsonb;
BEGIN
    SELECT coalesce(jsonb_object_agg(status, n), '{}'), coalesce(sum(n), 0)
    INTO outcomes, recipients
    FROM (SELECT m.status, count(*) AS n FROM callback.messages m WHERE m.campaign_id = NEW.id GROUP BY m.status) s;
    data := jsonb_build_object(
        'campaign_id', NEW.id,
        'list_id', NEW.list_id,
        'account_id', NEW.account_id,
        'name', NEW.name,
        'status', NEW.status,
        'created_at', callback._iso(NEW.created_at),
        'ended_at', callback._iso(NEW.ended_at),
        'recipients', recipients,
        'outcomes', outcomes);
    IF callback._report_storage() THEN
        PERFORM callback._queue_report(NEW.account_id, NEW.id, data);
    ELSE
        PERFORM callback._record('campaign.complete', NEW, NULL, NEW.account_id, NULL, callback._campaign_vars(NEW), data);
    END IF;
    RETURN NULL;
END $$;

ALTER TABLE callback.campaign_reports ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON callback.campaign_reports
    USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]));
GRANT ALL ON callback.campaign_reports TO callback_admin;
GRANT SELECT ON callback.campaign_reports TO callback_tenant;
REVOKE ALL ON FUNCTION callback._report_storage(), callback._campaign_report_lines(bigint),
    callback._queue_report(bigint, bigint, jsonb), callback._report_done(bigint, bigint, text, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._report_storage(), callback._campaign_report_lines(bigint),
    callback._queue_report(bigint, bigint, jsonb), callback._report_done(bigint, bigint, text, text, text, bigint) TO callback_admin;
GRANT EXECUTE ON FUNCTION callback._report_storage(), callback._campaign_report_lines(bigint) TO callback_tenant;

-- Batched reports, sql/batching.sql; each batch is a callback carrying batch_size events
-- (sql/queue.sql), whose history each of them shows (sql/delivery.sql); targets' batching
-- comes with their settings (sql/events.sql).

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

DROP FUNCTION callback._target_settings(bigint, bigint, bigint);
CREATE FUNCTION callback._target_settings(campaign_id bigint, list_id bigint, account_id bigint)
RETURNS TABLE (
    campaign_url text, campaign_method text, campaign_format text, campaign_headers text,
    campaign_basic_auth text, campaign_bearer_token text, campaign_signing_secret text, campaign_retry_policy text,
    campaign_events text[], campaign_event_urls text, campaign_alert_url text, campaign_enabled bool,
    list_url text, list_method text, list_format text, list_headers text,
    list_basic_auth text, list_bearer_token text, list_signing_secret text, list_retry_policy text,
    list_events text[], webhook_url text, subscribed bool, campaign_list_id bigint, campaign_env text,
    campaign_batch text, list_batch text, webhook_batch text
)
LANGUAGE sql STABLE AS $$
    SELECT c.callback_url, c.callback_method::text, c.callback_format::text, c.callback_headers::text,
           c.callback_basic_auth, c.callback_bearer_token, c.signing_secret, c.retry_policy,
           c.callback_events::text[], nullif(c.event_urls, '{}')::text, c.alert_url, c.callbacks_enabled,
           l.callback_url, l.callback_method::text, l.callback_format::text, l.callback_headers::text,
           l.callback_basic_auth, l.callback_bearer_token, l.signing_secret, l.retry_policy,
           l.callback_events::text[], w.url,
           EXISTS (SELECT FROM callback.subscriptions s WHERE s.account_id = _target_settings.account_id AND s.enabled),
           c.list_id, nullif(c.env, '{}')::text,
           coalesce(callback._batching(c.account_id, 'campaign', c.id), callback._batching(l.account_id, 'list', l.id)),
           callback._batching(l.account_id, 'list', l.id),
           CASE WHEN w.url IS NOT NULL THEN callback._batching(w.account_id, 'account', w.account_id) END
    FROM (SELECT) one
    LEFT JOIN callback.campaigns c ON c.id = _target_settings.campaign_id
    LEFT JOIN callback.lists l ON l.id = coalesce(c.list_id, _target_settings.list_id)
    LEFT JOIN callback.delivery_webhooks w ON w.account_id = _target_settings.account_id
$$;
REVOKE ALL ON FUNCTION callback._target_settings(bigint, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._target_settings(bigint, bigint, bigint) TO callback_admin;
CREATE TRIGGER batching_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON callback.batching
    FOR EACH STATEMENT EXECUTE FUNCTION callback._settings_changed();

ALTER TABLE callback.batching ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON callback.batching
    USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]));
ALTER TABLE callback.batch_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON callback.batch_events
    USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]));
GRANT ALL ON callback.batching, callback.batch_events TO callback_admin;
GRANT ALL ON SEQUENCE callback.batching_id_seq, callback.batch_events_id_seq TO callback_admin;
GRANT USAGE ON SEQUENCE callback.batching_id_seq, callback.batch_events_id_seq TO callback_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON callback.batching TO callback_tenant;
GRANT SELECT (account_id, id, callback_id, event, campaign_id, message_id, recorded_at, batch_key, send_by,
              max_count, max_bytes, format, target, subscription_id, url, method, headers, envelope, retry_policy)
    ON callback.batch_events TO callback_tenant;
REVOKE ALL ON FUNCTION callback._check_batching(), callback._batching(bigint, text, bigint),
    callback.set_batching(text, bigint, int, int, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._check_batching(), callback._batching(bigint, text, bigint),
    callback.set_batching(text, bigint, int, int, interval) TO callback_admin, callback_tenant;

-- The callbacks table split in three (sql/queue.sql): each callback's request written once
-- (callback.requests), a narrow queue row while it is not done (callbacks_undone), how it
-- ended after (the attempt that ended it, or a row of callbacks_ended; the view
-- callbacks_done shows both), and callback.callbacks a view of them. Every callback kept is
-- copied once here; those done keep their done rows, in callbacks_ended. A done callback no longer keeps its last due time.
-- Ids of callbacks: rendering takes them ahead (nextval) to write a request and its queue row
-- in one statement.
CREATE SEQUENCE callback.callbacks_id_seq1;
SELECT setval('callback.callbacks_id_seq1', s.last_value, s.is_called) FROM callback.callbacks_id_seq s;

CREATE TABLE callback.requests (
    -- The columns of 8 bytes first, then those of 4, then those of any length: no padding
    -- between them for alignment.
    id bigint NOT NULL DEFAULT nextval('callback.callbacks_id_seq1'),
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

-- The queue. Its account, campaign, target and order key (hashed) are the request's, and its
-- endpoint that of the request's URL (callback._endpoint, computed once, when it is rendered),
-- kept so that claiming, ordering, holding a campaign's callbacks and limiting an endpoint
-- read the queue alone. fillfactor 50: room on its page for the row written again when it is
-- released, and when it is leased (a HOT update, as a lease changes no indexed column).
CREATE TABLE callback.callbacks_undone1 (
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

CREATE TABLE callback.callbacks_ended (
    id bigint NOT NULL,
    account_id bigint NOT NULL,
    state callback.callback_state NOT NULL CONSTRAINT done CHECK (state IN ('delivered', 'failed')),
    attempts int NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    last_http_status int,
    last_error text
);

INSERT INTO callback.requests (
    id, webhook_id, event, account_id, campaign_id, message_id, target, subscription_id, url, method,
    headers, body, auth_header, signing_secret, retry_policy, order_key, recorded_at, batch_size)
SELECT id, webhook_id, event, account_id, campaign_id, message_id, target, subscription_id, url, method,
       callback._headers_kept(headers, body IS NOT NULL), callback._packed_body(body), auth_header, signing_secret, retry_policy,
       nullif(order_key, callback._order_key(message_id, campaign_id, url)), recorded_at, NULL
FROM callback.callbacks;
INSERT INTO callback.callbacks_undone1 (
    id, account_id, campaign_id, target, state, attempts, due_at, leased_until, leased_by, last_http_status,
    last_error, endpoint, order_hash)
SELECT id, account_id, campaign_id, target, state, attempts, due_at, leased_until, leased_by, last_http_status,
       last_error, callback._endpoint(url), callback._order_hash(order_key)
FROM callback.callbacks_undone;
INSERT INTO callback.callbacks_ended (id, account_id, state, attempts, finished_at, last_http_status, last_error)
SELECT id, account_id, state, attempts, coalesce(finished_at, recorded_at), last_http_status, last_error
FROM callback.callbacks_done;

-- The history's one index: by callback, the id making it unique; each attempt's account; the
-- attempt that ended its callback marked with the outcome (sql/queue.sql says why). An attempt
-- whose callback is gone goes too: the history never showed it.
DELETE FROM callback.deliveries d WHERE NOT EXISTS (SELECT FROM callback.requests r WHERE r.id = d.callback_id);
ALTER TABLE callback.deliveries DROP CONSTRAINT deliveries_pkey, ADD PRIMARY KEY (callback_id, id),
    ADD COLUMN account_id bigint, ADD COLUMN outcome callback.callback_state CONSTRAINT done CHECK (outcome IN ('delivered', 'failed'));
DROP INDEX callback.deliveries_callback_id_idx;
UPDATE callback.deliveries d SET account_id = r.account_id FROM callback.requests r WHERE r.id = d.callback_id;
ALTER TABLE callback.deliveries ALTER account_id SET NOT NULL;
ALTER POLICY own_account ON callback.deliveries
    USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]));
COMMENT ON COLUMN callback.deliveries.outcome IS 'delivered or failed on the attempt that ended its callback; NULL on the others, and once the callback is replayed.';

-- What reads the old table goes with it, and is made again over the new ones below. The
-- history view's type is in functions' signatures: it is replaced, not dropped.
DROP VIEW callback.queue, callback.endpoint_health, callback.campaign_summary;
CREATE OR REPLACE VIEW callback.history AS
SELECT d.id, d.callback_id, r.message_id, r.campaign_id, r.account_id, r.event, r.target, r.method, r.url,
       d.attempt, d.started_at, d.duration, d.http_status, d.response_excerpt, d.error,
       NULL::callback.callback_state AS state, r.batch_size
FROM callback.deliveries d
JOIN callback.requests r ON r.id = d.callback_id;
SELECT pg_catalog.pg_extension_config_dump('callback.requests', '');
DROP TABLE callback.callbacks;
ALTER SEQUENCE callback.callbacks_id_seq1 RENAME TO callbacks_id_seq;
ALTER SEQUENCE callback.callbacks_id_seq OWNED BY callback.requests.id;
SELECT pg_catalog.pg_extension_config_dump('callback.callbacks_id_seq', '');
ALTER TABLE callback.callbacks_undone1 RENAME TO callbacks_undone;
SELECT pg_catalog.pg_extension_config_dump('callback.callbacks_undone', '');
SELECT pg_catalog.pg_extension_config_dump('callback.callbacks_ended', '');
-- DROP TABLE leaves what it dropped on the list of what pg_dump keeps: off it.
UPDATE pg_catalog.pg_extension e
SET extconfig = (SELECT array_agg(u.x ORDER BY u.n) FROM unnest(e.extconfig) WITH ORDINALITY AS u(x, n)
                 WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = u.x)),
    extcondition = (SELECT array_agg(u.cond ORDER BY u.n) FROM unnest(e.extconfig, e.extcondition) WITH ORDINALITY AS u(x, cond, n)
                    WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = u.x))
WHERE e.extname = 'pg_callback';
CREATE UNIQUE INDEX callbacks_undone_id ON callback.callbacks_undone (id);
CREATE INDEX callbacks_due ON callback.callbacks_undone (due_at, id) WHERE state = 'pending';
CREATE INDEX callbacks_order ON callback.callbacks_undone (order_hash, id);
CREATE INDEX callbacks_waiting ON callback.callbacks_undone (id) WHERE state = 'waiting';
CREATE UNIQUE INDEX callbacks_ended_id ON callback.callbacks_ended (id);
COMMENT ON TABLE callback.callbacks_undone IS 'The queue: a row per callback not yet done (waiting, pending, held), its request in callback.requests.';
COMMENT ON COLUMN callback.callbacks_undone.due_at IS 'When the next attempt may be made.';
COMMENT ON COLUMN callback.callbacks_undone.leased_until IS 'A worker that claimed the row holds it until then; after that another may reclaim it.';
COMMENT ON TABLE callback.callbacks_ended IS 'A row per callback done that no attempt ended: canceled, unsendable when rendered, or given a done state by an administrator (callback.callbacks_done shows these with those an attempt ended).';

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

CREATE OR REPLACE FUNCTION callback._retry_policy_in_use() RETURNS trigger
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

CREATE OR REPLACE FUNCTION callback._campaign_callbacks_switched() RETURNS trigger
LANGUAGE plpgsql SET enable_nestloop = off AS $$
BEGIN
    IF NEW.callbacks_enabled THEN
        -- The first held callback of each order key is due at once (unless one of its key is
        -- still in flight or waiting); the rest wait their turn. Joins, not a subquery per row:
        -- a campaign may hold a million callbacks.
        WITH held AS (
            SELECT order_hash, min(id) AS first FROM callback.callbacks_undone
            WHERE campaign_id = NEW.id AND state = 'held'
            GROUP BY order_hash
        ), busy AS (
            SELECT DISTINCT o.order_hash FROM callback.callbacks_undone o JOIN held USING (order_hash)
            WHERE o.state IN ('waiting', 'pending')
        )
        UPDATE callback.callbacks_undone c
        SET state = CASE WHEN c.id = held.first AND busy.order_hash IS NULL THEN 'pending' ELSE 'waiting' END
                        ::callback.callback_state,
            due_at = now()
        FROM held LEFT JOIN busy USING (order_hash)
        WHERE c.campaign_id = NEW.id AND c.state = 'held' AND c.order_hash = held.order_hash;
        PERFORM callback._wake_on_commit();
    ELSE
        -- Not those on the wire (leased): their worker writes how they went.
        UPDATE callback.callbacks_undone SET state = 'held'
        WHERE campaign_id = NEW.id AND state = 'pending' AND target IN ('campaign_event', 'campaign', 'list')
          AND (leased_until IS NULL OR leased_until < now());
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION callback.purge(older_than interval, max_rows bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    purged bigint;
BEGIN
    IF older_than IS NULL OR older_than < '0' THEN
        RAISE EXCEPTION 'older_than must be zero or more, not %', coalesce(older_than::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- What says a chosen callback was delivered is deleted first, and only what still says so
    -- (a replay may have reopened it meanwhile): then the rest of it.
    WITH chosen AS (
        SELECT o.id FROM callback.callbacks_done o
        WHERE o.state = 'delivered' AND o.finished_at < now() - older_than
        ORDER BY o.id
        LIMIT max_rows
    ), ended AS (
        DELETE FROM callback.callbacks_ended e USING chosen
        WHERE e.id = chosen.id AND e.state = 'delivered'
        RETURNING e.account_id, e.id
    ), attempted AS (
        DELETE FROM callback.deliveries d USING chosen
        WHERE d.callback_id = chosen.id AND d.outcome = 'delivered'
        RETURNING d.account_id, d.callback_id AS id
    ), gone AS (
        SELECT * FROM ended UNION ALL SELECT * FROM attempted
    ), requests AS (
        DELETE FROM callback.requests r USING gone WHERE r.account_id = gone.account_id AND r.id = gone.id
    ), history AS (
        DELETE FROM callback.deliveries d USING gone WHERE d.callback_id = gone.id AND d.outcome IS NULL
    ), batched AS (
        DELETE FROM callback.batch_events b USING gone WHERE b.callback_id = gone.id
    )
    SELECT count(*) INTO purged FROM gone;
    RETURN purged;
END $$;

CREATE VIEW callback.queue WITH (security_invoker = true) AS
SELECT c.endpoint,
       count(*) AS depth,
       count(*) FILTER (WHERE c.state = 'pending' AND c.due_at <= now() AND c.leased_until IS NULL) AS due,
       count(*) FILTER (WHERE c.leased_until > now()) AS in_flight,
       count(*) FILTER (WHERE c.state = 'pending' AND c.due_at > now()) AS retrying,
       count(*) FILTER (WHERE c.state = 'waiting') AS waiting,
       count(*) FILTER (WHERE c.state = 'held') AS held,
       coalesce(max(now() - c.due_at) FILTER (WHERE c.state = 'pending' AND c.due_at <= now()), '0') AS lag,
       min(r.recorded_at) AS oldest_recorded_at
FROM callback.callbacks_undone c
JOIN callback.requests r ON r.account_id = c.account_id AND r.id = c.id
GROUP BY 1;
COMMENT ON VIEW callback.queue IS 'Callbacks not done yet, per endpoint (scheme, host and port): how many, due now, in flight, waiting for a retry, waiting behind an earlier one, held; lag: how long the longest-due callback has been due.';

CREATE VIEW callback.endpoint_health WITH (security_invoker = true) AS
WITH attempts AS (
    SELECT callback._endpoint(c.url) AS endpoint, d.started_at, d.error IS NULL AS ok, d.http_status, d.error
    FROM callback.deliveries d
    JOIN callback.requests c ON c.id = d.callback_id
), last_success AS (
    SELECT endpoint, max(started_at) FILTER (WHERE ok) AS at FROM attempts GROUP BY endpoint
)
SELECT a.endpoint,
       count(*) AS attempts,
       round(avg(a.ok::int), 4) AS success_rate,
       count(*) FILTER (WHERE a.started_at > now() - interval '1 hour') AS attempts_last_hour,
       round(avg(a.ok::int) FILTER (WHERE a.started_at > now() - interval '1 hour'), 4) AS success_rate_last_hour,
       count(*) FILTER (WHERE NOT a.ok AND a.started_at > coalesce(s.at, '-infinity')) AS consecutive_failures,
       s.at AS last_success_at,
       max(a.started_at) FILTER (WHERE NOT a.ok) AS last_failure_at,
       (array_agg(a.error ORDER BY a.started_at DESC) FILTER (WHERE NOT a.ok))[1] AS last_error,
       max(a.started_at) AS last_attempt_at,
       coalesce(e.state, 'up') AS state,
       e.since AS state_since,
       e.next_probe_at
FROM attempts a
JOIN last_success s USING (endpoint)
LEFT JOIN callback._endpoint_states() e USING (endpoint)
GROUP BY a.endpoint, s.at, e.state, e.since, e.next_probe_at;
COMMENT ON VIEW callback.endpoint_health IS 'Every endpoint (scheme, host and port) in the history kept: attempts and success rate, overall and in the last hour; failures since the last success; the last success, failure and error; up or down (sql/health.sql) since when, and when a down one is probed next.';

CREATE VIEW callback.campaign_summary WITH (security_invoker = true) AS
SELECT c.id AS campaign_id, c.account_id, c.name, c.status, c.callbacks_enabled,
       count(cb.id) AS callbacks,
       count(cb.id) FILTER (WHERE cb.state = 'delivered') AS delivered,
       count(cb.id) FILTER (WHERE cb.state = 'failed') AS failed,
       count(cb.id) FILTER (WHERE cb.state IN ('waiting', 'pending')) AS to_send,
       count(cb.id) FILTER (WHERE cb.state = 'held') AS held,
       coalesce(sum(cb.attempts), 0) AS attempts,
       max(cb.finished_at) FILTER (WHERE cb.state = 'delivered') AS last_delivered_at,
       (SELECT count(*) FROM callback.alerts a WHERE a.campaign_id = c.id) AS alerts,
       coalesce(sum(coalesce(cb.batch_size, 1)) FILTER (WHERE cb.id IS NOT NULL), 0) AS events,
       coalesce(sum(coalesce(cb.batch_size, 1)) FILTER (WHERE cb.state = 'delivered'), 0) AS events_delivered
FROM callback.campaigns c
LEFT JOIN callback.callbacks cb ON cb.campaign_id = c.id
GROUP BY c.id;
COMMENT ON VIEW callback.campaign_summary IS 'Each campaign''s callbacks: how many, delivered, failed, still to send, held; attempts made, the last delivery, alerts raised; the events they carry (a batch carries several), and those delivered.';

CREATE OR REPLACE VIEW callback.history AS
SELECT d.id, d.callback_id, c.message_id, c.campaign_id, c.account_id, c.event, c.target, c.method, c.url,
       d.attempt, d.started_at, d.duration, d.http_status, d.response_excerpt, d.error, c.state,
       c.batch_size
FROM callback.deliveries d
JOIN callback.callbacks c ON c.id = d.callback_id
WHERE c.batch_size IS NULL
UNION ALL
-- A batch's attempts, once for each of its events.
SELECT d.id, d.callback_id, b.message_id, c.campaign_id, c.account_id, b.event, c.target, c.method, c.url,
       d.attempt, d.started_at, d.duration, d.http_status, d.response_excerpt, d.error, c.state,
       c.batch_size
FROM callback.batch_events b
JOIN callback.callbacks c ON c.id = b.callback_id
JOIN callback.deliveries d ON d.callback_id = c.id;
COMMENT ON VIEW callback.history IS 'Every HTTP attempt with its callback: when, how long, the status, an excerpt of the answer, the error. The attempts of a batch (batch_size events in one request) appear once for each of its events, with that event''s type and message.';
ALTER VIEW callback.history SET (security_invoker = true);

-- Security as sql/tenants.sql sets it for the new tables, views and functions.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['requests', 'callbacks_undone', 'callbacks_ended'] LOOP
        EXECUTE format('ALTER TABLE callback.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY own_account ON callback.%I
                            USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]))', t);
    END LOOP;
END $$;
ALTER FUNCTION callback._campaign_callbacks_switched() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION callback._retry_policy_in_use() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION callback._callbacks_changed(), callback._reopen(bigint[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION callback._callbacks_changed(), callback._reopen(bigint[], bigint[]) TO callback_admin, callback_tenant;
GRANT ALL ON callback.requests, callback.callbacks_undone, callback.callbacks_ended, callback.callbacks_done, callback.callbacks,
    callback.queue, callback.endpoint_health, callback.campaign_summary TO callback_admin;
GRANT ALL ON SEQUENCE callback.callbacks_id_seq TO callback_admin;
GRANT USAGE ON SEQUENCE callback.callbacks_id_seq TO callback_tenant;
GRANT SELECT ON callback.queue, callback.endpoint_health, callback.campaign_summary, callback.callbacks_undone,
    callback.callbacks_ended, callback.callbacks_done TO callback_tenant;
DO $$
DECLARE
    t text;
    readable text;
BEGIN
    FOREACH t IN ARRAY ARRAY['requests', 'callbacks'] LOOP
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO readable
        FROM pg_attribute
        WHERE attrelid = format('callback.%I', t)::regclass AND attnum > 0 AND NOT attisdropped
          AND attname NOT IN ('callback_basic_auth', 'callback_bearer_token', 'signing_secret', 'auth_header', 'private_key');
        EXECUTE format('GRANT SELECT (%s) ON callback.%I TO callback_tenant', readable, t);
    END LOOP;
END $$;


