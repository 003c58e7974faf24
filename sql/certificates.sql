-- Client certificates (mutual TLS): a certificate and its private key, presented to receivers
-- that ask for one. Set per account (every callback of the account), per list (the list's
-- callbacks and its campaigns') or per campaign; the most specific wins: a campaign's, else
-- its list's, else its account's. Callbacks to the account's own targets (a message's own
-- webhook, the delivery-status webhook, subscriptions) present the account's.
--
-- Which one a callback presents is worked out each time the workers claim it
-- (callback._client_certificate, called by sql/worker/claim.sql), so a certificate set or
-- renewed applies to callbacks not yet sent too. Like signing secrets, private keys are
-- unreadable by tenants (sql/tenants.sql) and kept by pg_dump.

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
