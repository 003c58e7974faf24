-- Events: triggers that record callbacks in the same transaction as the change that caused them.
--
-- An event goes to one primary target, the most specific that is set:
--   1. the message's own webhook (notify_url), for message.status;
--   2. the campaign's URL for that event type (event_urls);
--   3. the campaign's callback_url, for the event types in its callback_events;
--   4. the list's callback_url (the campaign's list, or the member's for a message outside
--      campaigns), when there is no campaign URL;
--   5. the account's delivery-status webhook, for message.status;
-- and every enabled subscription of the account whose filters match gets its own copy.
-- notify = false on a message records nothing for it. campaign.callbacks_disabled goes to the
-- campaign's alert_url first, and is never held.
-- Recording arms a commit hook that wakes the delivery workers when the transaction commits.

-- One callback to one target; `target.callback_url` is the URL template.
CREATE FUNCTION callback._enqueue(
    event callback.event_type,
    kind callback.target_kind,
    target callback.callback_settings,
    account_id bigint,
    campaign_id bigint,
    message_id bigint,
    subscription_id bigint,
    vars jsonb,
    envelope jsonb,
    held bool
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    url text := callback._render_url(target.callback_url, vars);
    is_post bool := target.callback_method = 'POST';
    key text := coalesce('message:' || message_id, 'campaign:' || campaign_id) || ' ' || url;
BEGIN
    INSERT INTO callback.callbacks (
        event, account_id, campaign_id, message_id, target, subscription_id,
        url, method, headers, body, auth_header, signing_secret, retry_policy, order_key, state)
    VALUES (
        event, account_id, campaign_id, message_id, kind, subscription_id,
        url,
        target.callback_method,
        CASE WHEN is_post
             THEN target.callback_headers || jsonb_build_object('Content-Type', callback._content_type(target.callback_format))
             ELSE target.callback_headers END,
        CASE WHEN is_post THEN callback._render_body(target.callback_format::text, envelope) END,
        CASE WHEN target.callback_basic_auth IS NOT NULL
             THEN 'Basic ' || translate(encode(convert_to(target.callback_basic_auth, 'UTF8'), 'base64'), E'\n', '')
             WHEN target.callback_bearer_token IS NOT NULL
             THEN 'Bearer ' || target.callback_bearer_token END,
        target.signing_secret,
        target.retry_policy,
        key,
        CASE WHEN held THEN 'held'
             WHEN EXISTS (SELECT FROM callback.callbacks c
                          WHERE c.order_key = key AND c.state IN ('waiting', 'pending', 'held')) THEN 'waiting'
             ELSE 'pending' END::callback.callback_state);
END $$;

-- The settings of a row of lists, campaigns or subscriptions, as a target.
CREATE FUNCTION callback._settings_of(source jsonb) RETURNS callback.callback_settings
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN jsonb_populate_record(NULL::callback.callback_settings, source);

-- A bare target: POST with no credentials, retried by the standard policy.
CREATE FUNCTION callback._plain_target(url text, format callback.body_format) RETURNS callback.callback_settings
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN callback._settings_of(jsonb_build_object(
    'callback_url', url, 'callback_method', 'POST', 'callback_format', format,
    'callback_headers', '{}'::jsonb, 'retry_policy', 'standard'));

-- Records one event: a callback for the primary target and one for each matching subscription.
CREATE FUNCTION callback._record(
    event callback.event_type,
    campaign callback.campaigns,
    message callback.messages,
    account_id bigint,
    channel callback.channel,
    vars jsonb,
    data jsonb
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    envelope jsonb := jsonb_build_object('type', event, 'timestamp', callback._iso(now()), 'data', data);
    held bool := campaign.id IS NOT NULL AND NOT campaign.callbacks_enabled AND event <> 'campaign.callbacks_disabled';
    list callback.lists;
    hook text;
    sub callback.subscriptions;
    target callback.callback_settings;
BEGIN
    PERFORM callback._wake_on_commit();
    vars := vars || jsonb_build_object('event', event);
    IF campaign.callback_url IS NULL THEN
        SELECT l.* INTO list FROM callback.lists l
        WHERE l.id = coalesce(campaign.list_id, (SELECT m.list_id FROM callback.members m WHERE m.id = message.member_id));
    END IF;

    IF message.notify_url IS NOT NULL AND event = 'message.status' THEN
        PERFORM callback._enqueue(event, 'message', callback._plain_target(message.notify_url, message.notify_content_type),
                                  account_id, campaign.id, message.id, NULL, vars, envelope, false);
    ELSIF event = 'campaign.callbacks_disabled' AND campaign.alert_url IS NOT NULL THEN
        target := callback._settings_of(to_jsonb(campaign));
        target.callback_url := campaign.alert_url;
        target.retry_policy := 'standard';
        PERFORM callback._enqueue(event, 'alert', target, account_id, campaign.id, NULL, NULL, vars, envelope, false);
    ELSIF campaign.event_urls ? event::text THEN
        target := callback._settings_of(to_jsonb(campaign));
        target.callback_url := campaign.event_urls ->> event::text;
        PERFORM callback._enqueue(event, 'campaign_event', target, account_id, campaign.id, message.id, NULL, vars, envelope, held);
    ELSIF campaign.callback_url IS NOT NULL THEN
        IF event = ANY (campaign.callback_events) THEN
            PERFORM callback._enqueue(event, 'campaign', callback._settings_of(to_jsonb(campaign)),
                                      account_id, campaign.id, message.id, NULL, vars, envelope, held);
        END IF;
    ELSIF list.callback_url IS NOT NULL AND event = ANY (list.callback_events) THEN
        PERFORM callback._enqueue(event, 'list', callback._settings_of(to_jsonb(list)),
                                  account_id, campaign.id, message.id, NULL, vars, envelope, held);
    ELSIF event = 'message.status' THEN
        SELECT w.url INTO hook FROM callback.delivery_webhooks w WHERE w.account_id = _record.account_id;
        IF FOUND THEN
            PERFORM callback._enqueue(event, 'account', callback._plain_target(hook, 'json'),
                                      account_id, campaign.id, message.id, NULL, vars, envelope, false);
        END IF;
    END IF;

    FOR sub IN
        SELECT * FROM callback.subscriptions s
        WHERE s.account_id = _record.account_id AND s.enabled
          AND (s.events = '{}' OR event = ANY (s.events))
          AND (s.channels = '{}' OR channel = ANY (s.channels))
        ORDER BY s.id
    LOOP
        PERFORM callback._enqueue(event, 'subscription', callback._settings_of(to_jsonb(sub)),
                                  account_id, campaign.id, message.id, sub.id, vars, envelope, false);
    END LOOP;
END $$;

-- Template variables of a message event: member attributes, then campaign env, then built-ins
-- (a later source wins a name both have).
CREATE FUNCTION callback._message_vars(message callback.messages, campaign callback.campaigns) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(member.attributes, '{}')
        || coalesce(campaign.env, '{}')
        || jsonb_strip_nulls(jsonb_build_object(
               'id', message.id, 'messageId', message.id, 'memberId', message.member_id,
               'campaignId', campaign.id, 'communicationId', campaign.id,
               'listId', coalesce(campaign.list_id, member.list_id),
               'accountId', message.account_id, 'batchId', message.batch_id,
               'status', message.status, 'channel', message.channel, 'destination', message.destination))
    FROM (SELECT NULL) AS one
    LEFT JOIN callback.members member ON member.id = message.member_id
$$;

-- The data of message events (message.status, message.sent, message.problem, message.final).
CREATE FUNCTION callback._message_data(
    message callback.messages, campaign callback.campaigns, previous_status text, final bool
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'message_id', message.id,
        'account_id', message.account_id,
        'campaign_id', message.campaign_id,
        'list_id', campaign.list_id,
        'member_id', message.member_id,
        'batch_id', message.batch_id,
        'channel', message.channel,
        'destination', message.destination,
        'status', message.status,
        'previous_status', previous_status,
        'final', final,
        'error', CASE WHEN message.error_code IS NOT NULL OR message.error_message IS NOT NULL
                      THEN jsonb_build_object('code', message.error_code, 'message', message.error_message) END,
        'callback_data', message.callback_data,
        'created_at', callback._iso(message.created_at),
        'status_at', callback._iso(message.updated_at))
$$;

CREATE FUNCTION callback._message_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    status callback.statuses;
    previous text;
    was_final bool := false;
    campaign callback.campaigns;
    vars jsonb;
    data jsonb;
BEGIN
    IF NOT NEW.notify THEN
        RETURN NULL;
    END IF;
    SELECT * INTO status FROM callback.statuses s WHERE s.status = NEW.status;
    IF TG_OP = 'UPDATE' THEN
        previous := OLD.status;
        SELECT s.final INTO was_final FROM callback.statuses s WHERE s.status = OLD.status;
    END IF;
    IF NOT (status.final OR NEW.intermediate_reports OR status.fires IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    IF NEW.campaign_id IS NOT NULL THEN
        SELECT * INTO campaign FROM callback.campaigns c WHERE c.id = NEW.campaign_id;
    END IF;
    vars := callback._message_vars(NEW, campaign);
    data := callback._message_data(NEW, campaign, previous, status.final);

    IF status.final OR NEW.intermediate_reports THEN
        PERFORM callback._record('message.status', campaign, NEW, NEW.account_id, NEW.channel, vars, data);
    END IF;
    IF status.fires IS NOT NULL THEN
        PERFORM callback._record(status.fires, campaign, NEW, NEW.account_id, NEW.channel, vars, data);
    END IF;
    IF status.final AND NOT was_final THEN
        PERFORM callback._record('message.final', campaign, NEW, NEW.account_id, NEW.channel, vars,
            data || jsonb_build_object('attempt_ids', coalesce(
                (SELECT jsonb_agg(a.id ORDER BY a.attempt_no) FROM callback.attempts a WHERE a.message_id = NEW.id),
                '[]'::jsonb)));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_record_insert AFTER INSERT ON callback.messages
    FOR EACH ROW EXECUTE FUNCTION callback._message_events();
CREATE TRIGGER messages_record_status AFTER UPDATE OF status ON callback.messages
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION callback._message_events();

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

-- campaign.complete: a campaign ended; the data counts its messages by status.
CREATE FUNCTION callback._campaign_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    outcomes jsonb;
    recipients bigint;
BEGIN
    SELECT coalesce(jsonb_object_agg(status, n), '{}'), coalesce(sum(n), 0)
    INTO outcomes, recipients
    FROM (SELECT m.status, count(*) AS n FROM callback.messages m WHERE m.campaign_id = NEW.id GROUP BY m.status) s;
    PERFORM callback._record('campaign.complete', NEW, NULL, NEW.account_id, NULL, callback._campaign_vars(NEW),
        jsonb_build_object(
            'campaign_id', NEW.id,
            'list_id', NEW.list_id,
            'account_id', NEW.account_id,
            'name', NEW.name,
            'status', NEW.status,
            'created_at', callback._iso(NEW.created_at),
            'ended_at', callback._iso(NEW.ended_at),
            'recipients', recipients,
            'outcomes', outcomes));
    RETURN NULL;
END $$;

CREATE TRIGGER campaigns_record_complete AFTER UPDATE OF status ON callback.campaigns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('completed', 'failed', 'canceled'))
    EXECUTE FUNCTION callback._campaign_events();
