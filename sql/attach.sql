-- Attaching pg_callback to an application's own message table: its status changes record
-- callbacks exactly as callback.messages' do (src/record/attached.rs), with the
-- campaign's or list's settings. Two triggers, like callback.messages': on INSERT, and on
-- UPDATE of the status column when it changes.

CREATE FUNCTION callback.attach(
    table_name regclass,
    id_column name,
    status_column name,
    campaign_column name DEFAULT NULL,
    list_column name DEFAULT NULL,
    destination_column name DEFAULT NULL,
    channel_column name DEFAULT NULL,
    error_code_column name DEFAULT NULL,
    error_message_column name DEFAULT NULL,
    callback_data_column name DEFAULT NULL,
    batch_column name DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    mapping text[] := '{}';
    field text;
    col name;
    type_name regtype;
    args text;
BEGIN
    IF table_name IS NULL OR id_column IS NULL OR status_column IS NULL THEN
        RAISE EXCEPTION 'table_name, id_column and status_column must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (campaign_column IS NULL) = (list_column IS NULL) THEN
        RAISE EXCEPTION 'give campaign_column or list_column, not both or neither'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A message''s callback settings and account come from its campaign, or from its list outside campaigns.';
    END IF;
    IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = table_name AND t.tgname = 'pg_callback_record_status') THEN
        RAISE EXCEPTION '% is attached already', table_name
            USING ERRCODE = 'duplicate_object', HINT = 'callback.detach() it first to attach it with other columns.';
    END IF;
    FOR field, col IN
        SELECT * FROM (VALUES ('id', id_column), ('status', status_column), ('campaign_id', campaign_column),
                              ('list_id', list_column), ('destination', destination_column), ('channel', channel_column),
                              ('error_code', error_code_column), ('error_message', error_message_column),
                              ('callback_data', callback_data_column), ('batch_id', batch_column)) AS m (field, col)
        WHERE m.col IS NOT NULL
    LOOP
        SELECT a.atttypid::regtype INTO type_name FROM pg_attribute a
        WHERE a.attrelid = table_name AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of % does not exist', col, table_name USING ERRCODE = 'undefined_column';
        END IF;
        IF field IN ('id', 'campaign_id', 'list_id') AND type_name NOT IN ('smallint', 'integer', 'bigint') THEN
            RAISE EXCEPTION 'column "%" of % is %, not an integer', col, table_name, type_name
                USING ERRCODE = 'datatype_mismatch', HINT = format('The %s column must be smallint, integer or bigint.', field);
        END IF;
        mapping := mapping || format('%s=%s', field, col);
    END LOOP;
    args := (SELECT string_agg(quote_literal(m), ', ') FROM unnest(mapping) m);
    EXECUTE format('CREATE TRIGGER pg_callback_record_insert AFTER INSERT ON %s
                    FOR EACH ROW EXECUTE FUNCTION callback._attached_events(%s)', table_name, args);
    EXECUTE format('CREATE TRIGGER pg_callback_record_status AFTER UPDATE OF %I ON %s
                    FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I) EXECUTE FUNCTION callback._attached_events(%s)',
                   status_column, table_name, status_column, status_column, args);
END $$;
COMMENT ON FUNCTION callback.attach(regclass, name, name, name, name, name, name, name, name, name, name) IS
    'Makes the status changes of an application''s table record callbacks as callback.messages'' do: names its id and status columns, its campaign (or list) column, and optionally destination, channel, error code and message, callback data and batch columns.';

CREATE FUNCTION callback.detach(table_name regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = table_name AND t.tgname = 'pg_callback_record_status') THEN
        RAISE EXCEPTION '% is not attached', table_name USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('DROP TRIGGER pg_callback_record_insert ON %s', table_name);
    EXECUTE format('DROP TRIGGER pg_callback_record_status ON %s', table_name);
END $$;
COMMENT ON FUNCTION callback.detach(regclass) IS 'Stops recording callbacks for the table''s status changes (drops the triggers attach() made).';
