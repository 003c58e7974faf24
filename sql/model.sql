-- The domain model: accounts, retry policies, statuses, lists, campaigns, members, messages, attempts.

CREATE TYPE callback.http_method AS ENUM ('GET', 'POST');
CREATE TYPE callback.body_format AS ENUM ('json', 'xml', 'form');
CREATE TYPE callback.channel AS ENUM ('sms', 'rcs', 'whatsapp', 'viber', 'voice', 'email', 'push');
CREATE TYPE callback.event_type AS ENUM (
    'message.sent', 'message.status', 'message.problem', 'message.attempt', 'message.final',
    'campaign.complete', 'campaign.callbacks_disabled'
);
CREATE TYPE callback.campaign_status AS ENUM ('draft', 'running', 'completed', 'failed', 'canceled');
CREATE TYPE callback.retry_kind AS ENUM ('fixed', 'quadratic', 'exponential', 'intervals');

COMMENT ON TYPE callback.event_type IS 'The events pg_callback records; the type field of every callback body.';

-- Timestamps in bodies are UTC ISO 8601 whatever the session's TimeZone: callback._iso, in Rust
-- (pg_callback_core::time), the one formatter of the times rendering and SQL put in bodies.

-- Raises 22023 naming the first bad setting of a row; the trigger argument 'https' requires HTTPS URLs.
CREATE FUNCTION callback._check_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM callback._check_settings(to_jsonb(NEW), TG_NARGS > 0 AND TG_ARGV[0] = 'https');
    RETURN NEW;
END $$;

CREATE TABLE callback.accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT name_1_to_200_characters CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE callback.accounts IS 'A customer of the platform; every list, campaign, message and callback belongs to one.';

CREATE TABLE callback.retry_policies (
    name text PRIMARY KEY CONSTRAINT name_is_a_lowercase_identifier CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    kind callback.retry_kind NOT NULL,
    max_attempts int NOT NULL CONSTRAINT max_attempts_from_1_to_100 CHECK (max_attempts BETWEEN 1 AND 100),
    step interval CONSTRAINT step_positive CHECK (step > '0'),
    cap interval CONSTRAINT cap_positive CHECK (cap > '0'),
    jitter real NOT NULL DEFAULT 0 CONSTRAINT jitter_from_0_to_1 CHECK (jitter BETWEEN 0 AND 1),
    intervals interval[] CONSTRAINT intervals_1_to_99_positive CHECK (cardinality(intervals) BETWEEN 1 AND 99 AND '0' < ALL (intervals)),
    timeout interval CONSTRAINT timeout_at_most_10_minutes CHECK (timeout > '0' AND timeout <= '10 minutes'),
    success_codes text NOT NULL DEFAULT '2xx' CONSTRAINT success_codes_2xx_or_200 CHECK (success_codes IN ('2xx', '200')),
    disable_campaign bool NOT NULL DEFAULT false,
    description text,
    -- fixed and quadratic need step; exponential step and cap; intervals the list, one per retry.
    CONSTRAINT kind_needs_its_settings CHECK (CASE kind
        WHEN 'fixed' THEN step IS NOT NULL
        WHEN 'quadratic' THEN step IS NOT NULL
        WHEN 'exponential' THEN step IS NOT NULL AND cap IS NOT NULL AND cap >= step
        WHEN 'intervals' THEN intervals IS NOT NULL AND max_attempts = cardinality(intervals) + 1
    END)
);
COMMENT ON TABLE callback.retry_policies IS 'How a callback is retried: the wait before each retry, how many attempts, the timeout, what counts as success, and whether final failure disables the campaign''s callbacks.';
COMMENT ON COLUMN callback.retry_policies.kind IS 'fixed: step between attempts; quadratic: retry n waits (n*n+1)*step; exponential: step*2^n up to cap; intervals: the listed waits in order.';
COMMENT ON COLUMN callback.retry_policies.max_attempts IS 'Attempts in all, the first included.';
COMMENT ON COLUMN callback.retry_policies.timeout IS 'The HTTP timeout of each attempt; NULL: the setting pg_callback.default_timeout.';
COMMENT ON COLUMN callback.retry_policies.jitter IS 'For exponential: each wait is randomly shortened by up to this fraction.';
COMMENT ON COLUMN callback.retry_policies.success_codes IS '2xx: any 2xx answer is success; 200: only exactly 200.';
COMMENT ON COLUMN callback.retry_policies.disable_campaign IS 'When the last attempt fails, disable the campaign''s callbacks and raise an alert.';

INSERT INTO callback.retry_policies (name, kind, max_attempts, step, timeout, success_codes, disable_campaign, description) VALUES
    ('strict', 'fixed', 3, '5 minutes', '120 seconds', '200', true,
     'Three attempts five minutes apart, 120 s timeout, only 200 is success; then the callback fails and the campaign''s callbacks are disabled.'),
    ('standard', 'quadratic', 21, '1 minute', NULL, '2xx', false,
     'Twenty retries, retry n waiting n*n+1 minutes (1, 2, 5, 10, 17 ... 41.5 h in all); then the callback fails and is kept for replay.');

CREATE TABLE callback.statuses (
    status text PRIMARY KEY CONSTRAINT status_is_a_lowercase_word CHECK (status ~ '^[a-z][a-z0-9_-]{0,31}$'),
    final bool NOT NULL,
    fires callback.event_type CONSTRAINT fires_sent_or_problem CHECK (fires IN ('message.sent', 'message.problem')),
    description text NOT NULL
);
COMMENT ON TABLE callback.statuses IS 'The statuses a message or attempt may take. Final statuses are always reported; intermediate ones only to messages that ask for intermediate reports. Add your own rows as needed.';
COMMENT ON COLUMN callback.statuses.fires IS 'An event recorded, besides message.status, whenever a message enters this status.';

INSERT INTO callback.statuses (status, final, fires, description) VALUES
    ('queued', false, NULL, 'Accepted by the application, not yet handed to a carrier.'),
    ('accepted', false, NULL, 'Accepted by the carrier or provider.'),
    ('sent', false, 'message.sent', 'Every destination of the message was processed.'),
    ('ringing', false, NULL, 'A voice call is ringing.'),
    ('in-progress', false, NULL, 'A voice call is in progress.'),
    ('delivered', true, NULL, 'Delivered to the handset, inbox or device.'),
    ('read', true, NULL, 'Opened or seen by the recipient.'),
    ('completed', true, NULL, 'A voice call was answered and completed.'),
    ('busy', true, NULL, 'The called number was busy.'),
    ('no-answer', true, NULL, 'The call was not answered.'),
    ('undeliverable', true, NULL, 'The carrier could not deliver the message.'),
    ('expired', true, NULL, 'The message expired before it could be delivered.'),
    ('rejected', true, NULL, 'The carrier or provider refused the message.'),
    ('failed', true, NULL, 'Delivery failed.'),
    ('canceled', true, NULL, 'The message was canceled before it was sent.'),
    ('error', true, 'message.problem', 'Generating or delivering the message failed (not a bounce).');

-- The callback settings a list, and a campaign created from it, carry: defined once here.
CREATE TYPE callback.callback_settings AS (
    callback_url text,
    callback_method callback.http_method,
    callback_format callback.body_format,
    callback_events callback.event_type[],
    callback_headers jsonb,
    callback_basic_auth text,
    callback_bearer_token text,
    signing_secret text,
    retry_policy text,
    event_urls jsonb,
    alert_url text,
    notification_list text[],
    env jsonb
);
COMMENT ON TYPE callback.callback_settings IS 'The callback settings of lists and campaigns; a campaign inherits each from its list unless it sets its own.';

CREATE FUNCTION callback._settings_columns() RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
        WHERE attrelid = 'callback.callback_settings'::regclass AND attnum > 0 AND NOT attisdropped);

CREATE TABLE callback.lists (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES callback.accounts,
    name text NOT NULL CONSTRAINT name_1_to_200_characters CHECK (length(name) BETWEEN 1 AND 200),
    LIKE callback.callback_settings,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, name)
);

CREATE TABLE callback.campaigns (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list_id bigint NOT NULL REFERENCES callback.lists,
    account_id bigint NOT NULL REFERENCES callback.accounts,
    name text NOT NULL CONSTRAINT name_1_to_200_characters CHECK (length(name) BETWEEN 1 AND 200),
    status callback.campaign_status NOT NULL DEFAULT 'draft',
    LIKE callback.callback_settings,
    callbacks_enabled bool NOT NULL DEFAULT true,
    overridden text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz
);
CREATE INDEX ON callback.campaigns (list_id);

ALTER TABLE callback.lists
    ALTER callback_method SET DEFAULT 'POST', ALTER callback_method SET NOT NULL,
    ALTER callback_format SET DEFAULT 'json', ALTER callback_format SET NOT NULL,
    ALTER callback_events SET DEFAULT '{message.status}', ALTER callback_events SET NOT NULL,
    ALTER callback_headers SET DEFAULT '{}', ALTER callback_headers SET NOT NULL,
    ALTER retry_policy SET DEFAULT 'standard', ALTER retry_policy SET NOT NULL,
    ALTER event_urls SET DEFAULT '{}', ALTER event_urls SET NOT NULL,
    ALTER notification_list SET DEFAULT '{}', ALTER notification_list SET NOT NULL,
    ALTER env SET DEFAULT '{}', ALTER env SET NOT NULL,
    ADD CONSTRAINT env_at_most_16384_characters CHECK (length(env::text) <= 16384),
    ADD FOREIGN KEY (retry_policy) REFERENCES callback.retry_policies;

-- A campaign's settings have no defaults: the inheritance trigger fills what the INSERT left NULL.
ALTER TABLE callback.campaigns
    ALTER callback_method SET NOT NULL,
    ALTER callback_format SET NOT NULL,
    ALTER callback_events SET NOT NULL,
    ALTER callback_headers SET NOT NULL,
    ALTER retry_policy SET NOT NULL,
    ALTER event_urls SET NOT NULL,
    ALTER notification_list SET NOT NULL,
    ALTER env SET NOT NULL,
    ADD CONSTRAINT env_at_most_16384_characters CHECK (length(env::text) <= 16384),
    ADD FOREIGN KEY (retry_policy) REFERENCES callback.retry_policies;

COMMENT ON TABLE callback.lists IS 'A list of members (recipients) with the callback settings its campaigns inherit.';
COMMENT ON TABLE callback.campaigns IS 'A campaign sent to a list. Created with the list''s callback settings (by trigger); a setting changed on the campaign is its own from then on, the others follow the list.';
COMMENT ON COLUMN callback.campaigns.overridden IS 'The settings this campaign set itself; the others follow its list. callback.reset_campaign_settings() makes them follow again.';
COMMENT ON COLUMN callback.campaigns.callbacks_enabled IS 'False after repeated callback failure (or by hand): new callbacks are held, not dropped, until it is true again.';

CREATE TABLE callback.members (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list_id bigint NOT NULL REFERENCES callback.lists ON DELETE CASCADE,
    account_id bigint NOT NULL REFERENCES callback.accounts,
    destination text CONSTRAINT destination_at_most_320_characters CHECK (length(destination) <= 320),
    attributes jsonb NOT NULL DEFAULT '{}' CONSTRAINT attributes_a_json_object CHECK (jsonb_typeof(attributes) = 'object')
        CONSTRAINT attributes_at_most_16384_characters CHECK (length(attributes::text) <= 16384),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON callback.members (list_id);
COMMENT ON TABLE callback.members IS 'A recipient on a list; its attributes fill ${name} variables of callback URL templates.';

CREATE TABLE callback.messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES callback.accounts,
    campaign_id bigint REFERENCES callback.campaigns,
    member_id bigint REFERENCES callback.members ON DELETE SET NULL,
    batch_id text CONSTRAINT batch_id_at_most_255_characters CHECK (length(batch_id) <= 255),
    channel callback.channel NOT NULL,
    destination text NOT NULL CONSTRAINT destination_1_to_320_characters CHECK (length(destination) BETWEEN 1 AND 320),
    -- One of callback.statuses, checked by the recording trigger (sql/events.sql).
    status text NOT NULL DEFAULT 'queued',
    error_code text CONSTRAINT error_code_at_most_64_characters CHECK (length(error_code) <= 64),
    error_message text CONSTRAINT error_message_at_most_2000_characters CHECK (length(error_message) <= 2000),
    notify bool NOT NULL DEFAULT true,
    notify_url text,
    notify_content_type callback.body_format NOT NULL DEFAULT 'json',
    intermediate_reports bool NOT NULL DEFAULT false,
    callback_data text CONSTRAINT callback_data_at_most_4000_characters CHECK (length(callback_data) <= 4000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON callback.messages (campaign_id);
COMMENT ON COLUMN callback.messages.status IS 'One of callback.statuses: a change to any other is refused (23503), as a foreign key would, at less cost to every status change.';
COMMENT ON TABLE callback.messages IS 'A message to one destination. Every change of status records callbacks in the same transaction.';
COMMENT ON COLUMN callback.messages.notify IS 'False: no callback of any kind is recorded for this message.';
COMMENT ON COLUMN callback.messages.notify_url IS 'The message''s own webhook: its delivery reports go here instead of the campaign''s, list''s or account''s URL.';
COMMENT ON COLUMN callback.messages.notify_content_type IS 'The body format of reports to notify_url: json, xml or form.';
COMMENT ON COLUMN callback.messages.intermediate_reports IS 'True: report every status; false: only final ones.';
COMMENT ON COLUMN callback.messages.callback_data IS 'Free-form text (up to 4000 characters) echoed back in every report of this message.';

CREATE TABLE callback.attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES callback.messages ON DELETE CASCADE,
    account_id bigint NOT NULL REFERENCES callback.accounts,
    attempt_no int NOT NULL CONSTRAINT attempt_no_positive CHECK (attempt_no > 0),
    status text REFERENCES callback.statuses,
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz,
    UNIQUE (message_id, attempt_no)
);
COMMENT ON TABLE callback.attempts IS 'One try at delivering a message (a call placed, say); setting its status records a message.attempt callback.';
COMMENT ON COLUMN callback.attempts.status IS 'The outcome; NULL while the attempt is under way.';

-- Row checks: bad settings are refused before anything is written.

CREATE TRIGGER lists_check BEFORE INSERT OR UPDATE ON callback.lists
    FOR EACH ROW EXECUTE FUNCTION callback._check_row();
CREATE TRIGGER campaigns_check BEFORE INSERT OR UPDATE ON callback.campaigns
    FOR EACH ROW EXECUTE FUNCTION callback._check_row();

-- Event URLs are keyed by event type.
CREATE FUNCTION callback._check_event_urls() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    key text;
BEGIN
    IF jsonb_typeof(NEW.event_urls) <> 'object' THEN
        RAISE EXCEPTION 'invalid event_urls'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'event_urls must be a JSON object of event type to URL.';
    END IF;
    FOR key IN SELECT jsonb_object_keys(NEW.event_urls) LOOP
        IF NOT key = ANY (enum_range(NULL::callback.event_type)::text[]) THEN
            RAISE EXCEPTION 'invalid event_urls'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('"%s" is not an event type.', key),
                      HINT = format('Event types are %s.', array_to_string(enum_range(NULL::callback.event_type), ', '));
        END IF;
    END LOOP;
    RETURN NEW;
END $$;

CREATE TRIGGER lists_check_event_urls BEFORE INSERT OR UPDATE OF event_urls ON callback.lists
    FOR EACH ROW EXECUTE FUNCTION callback._check_event_urls();
CREATE TRIGGER campaigns_check_event_urls BEFORE INSERT OR UPDATE OF event_urls ON callback.campaigns
    FOR EACH ROW EXECUTE FUNCTION callback._check_event_urls();

-- Members take their account from their list.
CREATE FUNCTION callback._member_derive() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT account_id INTO NEW.account_id FROM callback.lists WHERE id = NEW.list_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'list % does not exist', NEW.list_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER members_derive BEFORE INSERT OR UPDATE OF list_id, account_id ON callback.members
    FOR EACH ROW EXECUTE FUNCTION callback._member_derive();

-- Messages take their account from their campaign; a member must be on the campaign's list.
CREATE FUNCTION callback._message_derive() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    campaign_account bigint;
    campaign_list bigint;
    member_list bigint;
BEGIN
    IF NEW.campaign_id IS NOT NULL THEN
        SELECT account_id, list_id INTO campaign_account, campaign_list
        FROM callback.campaigns WHERE id = NEW.campaign_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'campaign % does not exist', NEW.campaign_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        IF NEW.account_id IS DISTINCT FROM campaign_account AND NEW.account_id IS NOT NULL THEN
            RAISE EXCEPTION 'message account % differs from the account % of campaign %',
                NEW.account_id, campaign_account, NEW.campaign_id
                USING ERRCODE = 'integrity_constraint_violation',
                      HINT = 'Leave account_id out: a message of a campaign takes the campaign''s account.';
        END IF;
        NEW.account_id := campaign_account;
    END IF;
    IF NEW.member_id IS NOT NULL THEN
        SELECT list_id INTO member_list FROM callback.members WHERE id = NEW.member_id;
        IF FOUND AND campaign_list IS NOT NULL AND member_list <> campaign_list THEN
            RAISE EXCEPTION 'member % is not on list % of campaign %', NEW.member_id, campaign_list, NEW.campaign_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    IF NEW.account_id IS NULL THEN
        RAISE EXCEPTION 'message has no account'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Give campaign_id, or account_id for a message outside any campaign.';
    END IF;
    PERFORM callback._check_settings(jsonb_build_object('notify_url', NEW.notify_url), false);
    RETURN NEW;
END $$;

CREATE TRIGGER messages_derive
    BEFORE INSERT OR UPDATE OF account_id, campaign_id, member_id, notify_url ON callback.messages
    FOR EACH ROW EXECUTE FUNCTION callback._message_derive();

-- updated_at is the time of the last change: set by the recording trigger, messages_record
-- (sql/events.sql).

-- Attempts take their account from their message and are numbered 1, 2, 3 ... when no number is given.
CREATE FUNCTION callback._attempt_derive() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT account_id INTO NEW.account_id FROM callback.messages WHERE id = NEW.message_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % does not exist', NEW.message_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.attempt_no IS NULL THEN
        SELECT coalesce(max(attempt_no), 0) + 1 INTO NEW.attempt_no
        FROM callback.attempts WHERE message_id = NEW.message_id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER attempts_derive BEFORE INSERT OR UPDATE OF message_id ON callback.attempts
    FOR EACH ROW EXECUTE FUNCTION callback._attempt_derive();
