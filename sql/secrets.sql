-- Signing-secret rotation (Standard Webhooks): a target's secret is replaced and, for an
-- overlap, every request signed with either secret carries both signatures, space-separated
-- in webhook-signature, so a receiver verifying with the old or the new one accepts it. The
-- overlap covers callbacks rendered before the rotation too (they carry the old secret): the
-- workers look up each callback's secret here when they claim it (sql/worker/claim.sql).

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
