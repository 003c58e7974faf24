-- Campaigns inherit their list's callback settings: copied when created, followed afterwards
-- for every setting the campaign has not set itself.

-- BEFORE INSERT: each setting the INSERT left NULL comes from the list; the others are the campaign's own.
CREATE FUNCTION callback._campaign_inherit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    list callback.lists;
    given jsonb := to_jsonb(NEW);
    inherited jsonb;
    setting text;
    own text[] := '{}';
BEGIN
    IF NEW.list_id IS NULL THEN
        RAISE EXCEPTION 'a campaign needs a list'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Give list_id: a campaign is created from a list and inherits its callback settings.';
    END IF;
    SELECT * INTO list FROM callback.lists WHERE id = NEW.list_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'list % does not exist', NEW.list_id
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'A campaign is created from a list: create the list first.';
    END IF;
    IF NEW.account_id IS NOT NULL AND NEW.account_id <> list.account_id THEN
        RAISE EXCEPTION 'campaign account % differs from the account % of list %', NEW.account_id, list.account_id, list.id
            USING ERRCODE = 'integrity_constraint_violation',
                  HINT = 'Leave account_id out: a campaign takes its list''s account.';
    END IF;
    inherited := to_jsonb(list);
    FOREACH setting IN ARRAY callback._settings_columns() LOOP
        IF given -> setting = 'null' THEN
            given := jsonb_set(given, ARRAY[setting], inherited -> setting);
        ELSE
            own := own || setting;
        END IF;
    END LOOP;
    NEW := jsonb_populate_record(NEW, given);
    NEW.account_id := list.account_id;
    NEW.overridden := own;
    RETURN NEW;
END $$;

-- BEFORE UPDATE: a setting changed on the campaign itself becomes its own; the list's changes
-- (made by _list_propagate, which sets callback.inheriting) do not. The settings named in
-- callback.resetting (set by reset_campaign_settings) are taken from the list again: here,
-- because a tenant may write credentials but not read them (sql/tenants.sql).
CREATE FUNCTION callback._campaign_override() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    new_row jsonb;
    old_row jsonb;
    list_row jsonb;
    setting text;
BEGIN
    IF NEW.list_id <> OLD.list_id OR NEW.account_id <> OLD.account_id THEN
        RAISE EXCEPTION 'a campaign cannot move to another list or account'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create a new campaign from the other list.';
    END IF;
    IF current_setting('callback.inheriting', true) = 'on' THEN
        RETURN NEW;
    END IF;
    IF coalesce(current_setting('callback.resetting', true), '') <> '' THEN
        new_row := to_jsonb(NEW);
        SELECT to_jsonb(l) INTO list_row FROM callback.lists l WHERE l.id = NEW.list_id;
        FOREACH setting IN ARRAY string_to_array(current_setting('callback.resetting'), ',') LOOP
            new_row := jsonb_set(new_row, ARRAY[setting], list_row -> setting);
            NEW.overridden := array_remove(NEW.overridden, setting);
        END LOOP;
        NEW := jsonb_populate_record(NEW, new_row - 'overridden');
        RETURN NEW;
    END IF;
    new_row := to_jsonb(NEW);
    old_row := to_jsonb(OLD);
    FOREACH setting IN ARRAY callback._settings_columns() LOOP
        IF new_row -> setting IS DISTINCT FROM old_row -> setting AND NOT setting = ANY (NEW.overridden) THEN
            NEW.overridden := NEW.overridden || setting;
        END IF;
    END LOOP;
    IF NEW.status IN ('completed', 'failed', 'canceled') AND OLD.status IS DISTINCT FROM NEW.status THEN
        NEW.ended_at := coalesce(NEW.ended_at, now());
    END IF;
    RETURN NEW;
END $$;

-- AFTER UPDATE of a list: each changed setting goes to the campaigns that have not set it themselves.
CREATE FUNCTION callback._list_propagate() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    new_row jsonb := to_jsonb(NEW);
    old_row jsonb := to_jsonb(OLD);
    setting text;
BEGIN
    PERFORM set_config('callback.inheriting', 'on', true);
    FOREACH setting IN ARRAY callback._settings_columns() LOOP
        IF new_row -> setting IS DISTINCT FROM old_row -> setting THEN
            EXECUTE format('UPDATE callback.campaigns SET %I = ($1).%I WHERE list_id = $2 AND NOT %L = ANY (overridden)',
                           setting, setting, setting)
                USING NEW, NEW.id;
        END IF;
    END LOOP;
    PERFORM set_config('callback.inheriting', 'off', true);
    RETURN NULL;
END $$;

-- Trigger names sort so that inheritance runs before the checks of the same row.
CREATE TRIGGER campaigns_a_inherit BEFORE INSERT ON callback.campaigns
    FOR EACH ROW EXECUTE FUNCTION callback._campaign_inherit();
CREATE TRIGGER campaigns_a_override BEFORE UPDATE ON callback.campaigns
    FOR EACH ROW EXECUTE FUNCTION callback._campaign_override();
CREATE TRIGGER lists_propagate AFTER UPDATE ON callback.lists
    FOR EACH ROW EXECUTE FUNCTION callback._list_propagate();

CREATE FUNCTION callback.reset_campaign_settings(campaign_id bigint, settings text[] DEFAULT NULL)
RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    unknown text[];
    own text[];
BEGIN
    settings := coalesce(settings, callback._settings_columns());
    unknown := ARRAY(SELECT unnest(settings) EXCEPT SELECT unnest(callback._settings_columns()));
    IF cardinality(unknown) > 0 THEN
        RAISE EXCEPTION 'unknown callback setting "%"', unknown[1]
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Callback settings are %s.', array_to_string(callback._settings_columns(), ', '));
    END IF;
    -- _campaign_override copies them from the list.
    PERFORM set_config('callback.resetting', array_to_string(settings, ','), true);
    UPDATE callback.campaigns c SET overridden = c.overridden WHERE c.id = reset_campaign_settings.campaign_id
    RETURNING c.overridden INTO own;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % does not exist', campaign_id USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM set_config('callback.resetting', '', true);
    RETURN own;
END $$;

COMMENT ON FUNCTION callback.reset_campaign_settings(bigint, text[]) IS
    'Makes a campaign take its list''s callback settings again and follow later changes of them. settings: which ones (NULL: all). Returns the settings the campaign still sets itself.';
