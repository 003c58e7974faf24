-- Tenants: each account's rows are visible and changeable only by the roles granted that
-- account (row-level security); credentials and signing secrets can be written by them but
-- not read; members of callback_admin see and change everything. The README's Security
-- section describes the model.
--
-- The triggers that read the credentials a callback needs or write the queue, which tenants
-- may not, run as the extension's owner (SECURITY DEFINER). The row-level checks of the table
-- a tenant writes still apply to the row after the triggers, so a row pointing at another
-- account's list or campaign (whose account the triggers copy) is refused.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'callback_admin') THEN
        CREATE ROLE callback_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'callback_tenant') THEN
        CREATE ROLE callback_tenant NOLOGIN;
    END IF;
END $$;

CREATE TABLE callback.account_roles (
    account_id bigint NOT NULL REFERENCES callback.accounts ON DELETE CASCADE,
    role_name name NOT NULL,
    PRIMARY KEY (account_id, role_name)
);
COMMENT ON TABLE callback.account_roles IS 'Which roles act for which account (and their members with them). Managed by grant_account() and revoke_account().';
SELECT pg_catalog.pg_extension_config_dump('callback.account_roles', '');

CREATE FUNCTION callback._admin() RETURNS bool
LANGUAGE sql STABLE
RETURN pg_has_role(current_user, 'callback_admin', 'MEMBER');

-- The accounts the current role acts for (account_roles' own policy shows a role its rows).
-- The accounts a role acts for, for the functions that change callbacks as the extension's
-- owner (replay, retry_now, replay_all): NULL for every account (callback_admin), otherwise
-- those account_roles gives the role or a role it belongs to. The role must be one the session
-- could become itself (SET ROLE): the public functions pass current_user, and calling the
-- internal ones with another role gains nothing.
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

CREATE FUNCTION callback._accounts() RETURNS bigint[]
LANGUAGE sql STABLE
RETURN (SELECT coalesce(array_agg(account_id), '{}') FROM callback.account_roles);

ALTER TABLE callback.account_roles ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_roles ON callback.account_roles
    USING ((SELECT callback._admin())
           OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = role_name AND pg_has_role(current_user, r.oid, 'MEMBER')));

-- One policy per table holding an account_id: the row's account must be one of the role's.
-- The subqueries run once per statement.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['lists', 'campaigns', 'members', 'messages', 'attempts', 'subscriptions',
                             'delivery_webhooks', 'alerts', 'events', 'requests', 'callbacks_undone', 'callbacks_ended',
                             'deliveries', 'signing_secret_overlaps', 'account_endpoint_limits', 'client_certificates',
                             'alert_emails', 'campaign_reports', 'batching', 'batch_events'] LOOP
        EXECUTE format('ALTER TABLE callback.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY own_account ON callback.%I
                            USING ((SELECT callback._admin()) OR account_id = ANY ((SELECT callback._accounts())::bigint[]))', t);
    END LOOP;
END $$;
ALTER TABLE callback.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON callback.accounts
    USING ((SELECT callback._admin()) OR id = ANY ((SELECT callback._accounts())::bigint[]));
ALTER VIEW callback.history SET (security_invoker = true);

-- The triggers that read credentials or write the queue run as the owner, with no say for the
-- caller's search_path. The others (touching updated_at, checks, taking the account from a
-- parent row the caller can see) run as the caller: a definer's setup costs every status
-- change about 5 % (BENCHMARKS.md). _message_record runs its statements as the owner in the
-- same way by itself (src/record/mod.rs), and none when it only stores an event.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['_attached_events', '_attempt_events', '_campaign_events',
                             '_campaign_inherit', '_campaign_override', '_list_propagate',
                             '_campaign_callbacks_switched', '_retry_policy_in_use'] LOOP
        EXECUTE format('ALTER FUNCTION callback.%I() SECURITY DEFINER SET search_path = pg_catalog, pg_temp', f);
    END LOOP;
END $$;

CREATE FUNCTION callback.grant_account(account_id bigint, role_name name) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM callback._require_account(account_id);
    IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = grant_account.role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO callback.account_roles VALUES (account_id, role_name) ON CONFLICT DO NOTHING;
    EXECUTE format('GRANT callback_tenant TO %I', role_name);
END $$;
COMMENT ON FUNCTION callback.grant_account(bigint, name) IS
    'Lets a role (and its members) see and change the account''s lists, campaigns, members, messages, callbacks and history, and makes it a member of callback_tenant.';

CREATE FUNCTION callback.revoke_account(account_id bigint, role_name name) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM callback.account_roles a WHERE a.account_id = revoke_account.account_id AND a.role_name = revoke_account.role_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role "%" does not act for account %', role_name, account_id USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT EXISTS (SELECT FROM callback.account_roles a WHERE a.role_name = revoke_account.role_name)
       AND EXISTS (SELECT FROM pg_roles r WHERE r.rolname = revoke_account.role_name) THEN
        EXECUTE format('REVOKE callback_tenant FROM %I', role_name);
    END IF;
END $$;
COMMENT ON FUNCTION callback.revoke_account(bigint, name) IS
    'Takes the account away from the role; a role left with no account leaves callback_tenant.';

-- Privileges. Administrators: everything.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA callback FROM PUBLIC;
GRANT USAGE ON SCHEMA callback TO callback_admin, callback_tenant;
GRANT ALL ON ALL TABLES IN SCHEMA callback TO callback_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA callback TO callback_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA callback TO callback_admin;

-- Tenants: their accounts' rows (the policies above), settings shared by all read-only.
GRANT USAGE ON ALL SEQUENCES IN SCHEMA callback TO callback_tenant;
GRANT SELECT ON callback.accounts, callback.account_roles, callback.retry_policies, callback.statuses, callback.endpoint_limits,
    callback.deliveries, callback.alerts, callback.history, callback.queue, callback.endpoint_health,
    callback.campaign_summary, callback.alert_emails, callback.alert_summary,
    callback.campaign_reports, callback.callbacks_undone, callback.callbacks_ended, callback.callbacks_done TO callback_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON callback.members, callback.messages, callback.attempts, callback.account_endpoint_limits,
    callback.delivery_webhooks TO callback_tenant;
GRANT INSERT, UPDATE, DELETE ON callback.lists, callback.campaigns, callback.subscriptions, callback.client_certificates
    TO callback_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON callback.batching TO callback_tenant;
-- Every column but the credentials may be read; none written (replay, retry_now and
-- replay_all change a callback's state for them, sql/delivery.sql).
DO $$
DECLARE
    t text;
    readable text;
BEGIN
    FOREACH t IN ARRAY ARRAY['lists', 'campaigns', 'subscriptions', 'requests', 'callbacks', 'client_certificates', 'batch_events'] LOOP
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO readable
        FROM pg_attribute
        WHERE attrelid = format('callback.%I', t)::regclass AND attnum > 0 AND NOT attisdropped
          AND attname NOT IN ('callback_basic_auth', 'callback_bearer_token', 'signing_secret', 'auth_header', 'private_key');
        EXECUTE format('GRANT SELECT (%s) ON callback.%I TO callback_tenant', readable, t);
    END LOOP;
END $$;
-- Every function but those that record, attach, purge or grant, or show the workers.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA callback TO callback_tenant;
REVOKE EXECUTE ON FUNCTION callback._record_event(text, bigint, bigint, bigint, bigint, text, text, text, jsonb, jsonb),
    callback._record(callback.event_type, callback.campaigns, callback.messages, bigint, callback.channel, jsonb, jsonb),
    callback._target_settings(bigint, bigint, bigint), callback._disable_campaign_callbacks(bigint, bigint),
    callback.purge(interval, bigint), callback.grant_account(bigint, name), callback.revoke_account(bigint, name),
    callback._worker_stats(), callback.attach(regclass, name, name, name, name, name, name, name, name, name, name),
    callback.detach(regclass), callback._attached_events(), callback._expand_events(int),
    callback.reset_endpoint(text), callback._unpark(text),
    callback._queue_report(bigint, bigint, jsonb), callback._report_done(bigint, bigint, text, text, text, bigint)
    FROM callback_tenant;
