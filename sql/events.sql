-- Events: triggers that record what happened in the same transaction as the change that caused
-- it. Message status changes are recorded by Rust (src/record/); attempts, campaigns and
-- alerts by PL/pgSQL triggers that call it. notify = false on a message records nothing for it.
-- campaign.callbacks_disabled is never held.
--
-- pg_callback.recording says what the transaction writes. 'deferred' (the default): one row of
-- callback.events per event, and a worker renders its callbacks (targets, URLs, bodies) as soon
-- as the transaction commits; 'immediate': the callbacks themselves. Either way a commit hook
-- wakes the delivery workers when the transaction commits.

CREATE TABLE callback.events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    event text,
    account_id bigint NOT NULL,
    campaign_id bigint,
    message_id bigint,
    list_id bigint,
    -- A message's status change: the message as it was then.
    member_id bigint,
    batch_id text,
    channel text,
    destination text,
    status text,
    previous_status text,
    error_code text,
    error_message text,
    callback_data text,
    notify_url text,
    notify_format text,
    created_at timestamptz,
    status_at timestamptz,
    intermediate_reports bool,
    has_attempts bool,
    -- Any other event: its template variables and data, made by its trigger.
    vars jsonb,
    data jsonb
) USING heap;  -- src/record/event_row.rs writes its rows straight into the heap and its index
COMMENT ON TABLE callback.events IS 'Events recorded with pg_callback.recording = deferred whose callbacks a worker has not rendered yet (it does so as soon as their transaction commits, in id order, and deletes them). Usually empty.';
COMMENT ON COLUMN callback.events.event IS 'NULL for a message''s status change (which may make message.status, message.sent or message.problem, and message.final); otherwise the event type.';
COMMENT ON COLUMN callback.events.list_id IS 'The list of a message outside campaigns, when its table names one (attached tables); a member''s list is looked up when the callbacks are rendered.';

-- What the targets of an event at this campaign (or, outside campaigns, this member's list)
-- and account are chosen from: the campaign's and the list's callback settings, the account's
-- delivery-status webhook, whether it has subscriptions (and, for the template variables of
-- message events, the campaign's list and env). list_id: the list of a message outside
-- campaigns (its member's). src/render/cache.rs keeps these per backend until one of the tables
-- they come from changes (the triggers at the end of this file), and chooses the one most
-- specific target that is set:
--   1. the message's own webhook (notify_url), for message.status;
--   2. for campaign.callbacks_disabled, the campaign's alert_url;
--   3. the campaign's URL for that event type (event_urls);
--   4. the campaign's callback_url, for the event types in its callback_events (and then
--      nothing else, even for the other event types);
--   5. the list's callback_url, for the event types in the list's callback_events;
--   6. the account's delivery-status webhook, for message.status;
-- and every enabled subscription of the account whose filters match gets its own copy.
-- Each target's batching (sql/batching.sql) comes with it: a campaign's own, else its list's.
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

-- Records one event for the triggers written in PL/pgSQL (attempts, campaigns, alerts): a
-- callback for the primary target and one for each matching subscription.
CREATE FUNCTION callback._record(
    event callback.event_type,
    campaign callback.campaigns,
    message callback.messages,
    account_id bigint,
    channel callback.channel,
    vars jsonb,
    data jsonb
) RETURNS void
LANGUAGE sql AS $$
    SELECT callback._record_event(event::text, account_id, campaign.id, message.id,
                                  (SELECT m.list_id FROM callback.members m WHERE m.id = message.member_id),
                                  channel::text, message.notify_url, message.notify_content_type::text, vars, data)
$$;

-- Template variables of a message event: member attributes, then campaign env, then built-ins
-- (a later source wins a name both have), made by the same Rust as those of status changes
-- (pg_callback_core::event, through callback._message_vars_of).
CREATE FUNCTION callback._message_vars(message callback.messages, campaign callback.campaigns) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT callback._message_vars_of(to_jsonb(message), member.attributes, campaign.env,
                                     coalesce(campaign.list_id, member.list_id))
    FROM (SELECT NULL) AS one
    LEFT JOIN callback.members member ON member.id = message.member_id
$$;

-- Status changes of messages: recorded by Rust (src/record/) and rendered (src/render/) with the
-- message data documented in the README.
-- Its plans are prepared once per backend; generic plans, or each run would plan them again
-- (their custom plans look cheaper, with the event's values folded in). Rendering sets that
-- itself (with_generic_plans in src/render/mod.rs), whichever function renders; storing an event
-- for later costs no setting.
COMMENT ON FUNCTION callback._expand_events(int) IS
    'Renders the callbacks of up to n events of callback.events, oldest first, and deletes them; returns how many. The workers call it; one caller at a time (another returns -1 at once).';
-- A status change: one BEFORE trigger sets updated_at and records it (src/record/messages.rs
-- says why not AFTER); its name sorts after messages_derive, whose account it reads. An insert: an
-- AFTER trigger, so that an INSERT ... ON CONFLICT that updates instead records the update only.
CREATE TRIGGER messages_record BEFORE UPDATE ON callback.messages
    FOR EACH ROW EXECUTE FUNCTION callback._message_record();
CREATE TRIGGER messages_record_insert AFTER INSERT ON callback.messages
    FOR EACH ROW EXECUTE FUNCTION callback._message_record();

-- A change to what targets are chosen from tells every backend's recording to read it again
-- (src/render/cache.rs), from the commit on; the changing transaction reads it afresh meanwhile.
CREATE TRIGGER lists_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON callback.lists
    FOR EACH STATEMENT EXECUTE FUNCTION callback._settings_changed();
CREATE TRIGGER campaigns_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON callback.campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION callback._settings_changed();
CREATE TRIGGER subscriptions_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON callback.subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION callback._settings_changed();
CREATE TRIGGER delivery_webhooks_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON callback.delivery_webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION callback._settings_changed();
CREATE TRIGGER batching_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON callback.batching
    FOR EACH STATEMENT EXECUTE FUNCTION callback._settings_changed();
CREATE TRIGGER statuses_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON callback.statuses
    FOR EACH STATEMENT EXECUTE FUNCTION callback._settings_changed();

-- message.attempt: an attempt of a message got its outcome.
CREATE FUNCTION callback._attempt_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    message callback.messages;
    campaign callback.campaigns;
BEGIN
    SELECT * INTO message FROM callback.messages m WHERE m.id = NEW.message_id;
    IF NOT message.notify THEN
        RETURN NULL;
    END IF;
    IF message.campaign_id IS NOT NULL THEN
        SELECT * INTO campaign FROM callback.campaigns c WHERE c.id = message.campaign_id;
    END IF;
    PERFORM callback._record('message.attempt', campaign, message, message.account_id, message.channel,
        callback._message_vars(message, campaign)
            || jsonb_build_object('attemptId', NEW.id, 'attemptNo', NEW.attempt_no, 'status', NEW.status),
        jsonb_build_object(
            'attempt_id', NEW.id,
            'attempt_no', NEW.attempt_no,
            'message_id', message.id,
            'account_id', message.account_id,
            'campaign_id', message.campaign_id,
            'channel', message.channel,
            'destination', message.destination,
            'status', NEW.status,
            'started_at', callback._iso(NEW.started_at),
            'ended_at', callback._iso(NEW.ended_at),
            'callback_data', message.callback_data));
    RETURN NULL;
END $$;

CREATE TRIGGER attempts_record_insert AFTER INSERT ON callback.attempts
    FOR EACH ROW WHEN (NEW.status IS NOT NULL)
    EXECUTE FUNCTION callback._attempt_events();
CREATE TRIGGER attempts_record_outcome AFTER UPDATE OF status ON callback.attempts
    FOR EACH ROW WHEN (OLD.status IS NULL AND NEW.status IS NOT NULL)
    EXECUTE FUNCTION callback._attempt_events();

-- Template variables of a campaign event: the campaign's env, then built-ins.
CREATE FUNCTION callback._campaign_vars(campaign callback.campaigns) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN campaign.env || jsonb_build_object(
    'campaignId', campaign.id, 'communicationId', campaign.id, 'listId', campaign.list_id,
    'accountId', campaign.account_id, 'status', campaign.status);

-- campaign.complete: a campaign ended; the data counts its messages by status. With report
-- storage set (pg_callback.report_bucket), the event waits for the report's upload
-- (sql/reports.sql), which records it with the report's link. As the extension's owner: the
-- tenant ending a campaign may not write the workers' queue of reports itself.
CREATE FUNCTION callback._campaign_events() RETURNS trigger
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

CREATE TRIGGER campaigns_record_complete AFTER UPDATE OF status ON callback.campaigns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('completed', 'failed', 'canceled'))
    EXECUTE FUNCTION callback._campaign_events();
