-- What pg_dump keeps: every row users wrote (accounts, lists, campaigns, members, messages,
-- attempts, subscriptions, delivery-status webhooks, alerts), the retry policies and statuses
-- they added (not the built-in ones, which CREATE EXTENSION makes), events not rendered yet,
-- the callbacks' requests, the queue (callbacks not yet done), the callbacks done and their
-- history, and where every identity sequence stands.
-- account_roles is marked in sql/tenants.sql, where it is created.
--
-- Restore with triggers off (PGOPTIONS='-c session_replication_role=replica' psql -f dump.sql,
-- as a superuser): otherwise restoring the messages would record their callbacks once more.

-- One call a statement: each updates the extension's row.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['accounts', 'lists', 'campaigns', 'members', 'messages', 'attempts', 'subscriptions',
                             'delivery_webhooks', 'alerts', 'events', 'requests', 'callbacks_undone', 'callbacks_ended',
                             'deliveries'] LOOP
        PERFORM pg_catalog.pg_extension_config_dump(format('callback.%I', t)::regclass, '');
    END LOOP;
    -- Where each id sequence stands.
    FOREACH t IN ARRAY ARRAY['accounts', 'lists', 'campaigns', 'members', 'messages', 'attempts', 'subscriptions',
                             'alerts', 'events', 'requests', 'deliveries'] LOOP
        PERFORM pg_catalog.pg_extension_config_dump(pg_get_serial_sequence(format('callback.%I', t), 'id')::regclass, '');
    END LOOP;
    -- The retry policies and statuses users added: CREATE EXTENSION makes the built-in ones.
    PERFORM pg_catalog.pg_extension_config_dump('callback.retry_policies', $f$WHERE name NOT IN ('strict', 'standard')$f$);
    PERFORM pg_catalog.pg_extension_config_dump('callback.statuses',
        format('WHERE status NOT IN (%s)', (SELECT string_agg(quote_literal(status), ', ' ORDER BY status) FROM callback.statuses)));
END $$;
