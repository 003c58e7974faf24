-- pg_callback demo: a list and a campaign, messages whose statuses change, callbacks recorded in
-- the same transactions and delivered by the worker to a local receiver; then a broken endpoint
-- retried until its campaign is disabled and the alert raised; and the history of every attempt.
\pset pager off
\set SHOW_CONTEXT never

-- Waits until a query returns true (the worker commits in its own transactions).
CREATE FUNCTION pg_temp.wait_until(condition text, seconds int DEFAULT 60) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ok bool;
BEGIN
    FOR i IN 1 .. seconds * 10 LOOP
        EXECUTE condition INTO ok;
        IF ok THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RAISE EXCEPTION 'timed out waiting for: %', condition;
END $$;

\echo '== An account; a list whose callback URL template and signing secret its campaigns inherit'
INSERT INTO callback.accounts (name) VALUES ('acme crm');
INSERT INTO callback.lists (account_id, name, callback_url, callback_events, callback_headers, signing_secret)
VALUES (1, 'newsletter subscribers',
        :'receiver' || '/crm/dlr/${customerId}?message=${id}&status=${status}',
        '{message.status,message.final}',
        '{"X-Crm-Tenant": "acme"}',
        :'secret');
INSERT INTO callback.campaigns (list_id, name, event_urls, env)
VALUES (1, 'spring sale',
        jsonb_build_object('campaign.complete', :'receiver' || '/crm/campaigns/${campaignId}/done?region=${region}'),
        '{"region": "eu-west"}');
SELECT id, name, callback_url, retry_policy, overridden FROM callback.campaigns;

\echo '== Two members, whose attributes fill the URL template'
INSERT INTO callback.members (list_id, destination, attributes) VALUES
    (1, '+306900000001', '{"customerId": "C-1001", "name": "Eleni"}'),
    (1, '+306900000002', '{"customerId": "C-1002", "name": "Nikos"}');

\echo '== Messages change status; each change records its callbacks in the same transaction'
INSERT INTO callback.messages (campaign_id, member_id, channel, destination, callback_data)
VALUES (1, 1, 'sms', '+306900000001', 'order=981'),
       (1, 2, 'whatsapp', '+306900000002', 'order=982');
UPDATE callback.messages SET status = 'sent';
UPDATE callback.messages SET status = 'delivered' WHERE id = 1;
UPDATE callback.messages SET status = 'undeliverable', error_code = 'EC_ABSENT_SUBSCRIBER' WHERE id = 2;

\echo '== A rolled-back change records nothing'
BEGIN;
UPDATE callback.messages SET status = 'read' WHERE id = 1;
ROLLBACK;

\echo '== The campaign ends'
UPDATE callback.campaigns SET status = 'completed';

\echo '== The worker delivers them (woken by the commits)'
SELECT pg_temp.wait_until($$SELECT bool_and(state = 'delivered') FROM callback.callbacks$$);
SELECT id, event, target, url, state, attempts FROM callback.callbacks ORDER BY id;
SELECT id, event, jsonb_pretty(body::jsonb) AS body FROM callback.callbacks WHERE id = 1;

\echo '== A second list points at a broken endpoint, with the strict policy: 3 attempts 5 minutes'
\echo '== apart (compressed here by pg_callback.time_scale), then the campaign is disabled'
INSERT INTO callback.lists (account_id, name, callback_url, retry_policy, alert_url, notification_list)
VALUES (1, 'vip customers', :'receiver' || '/broken/dlr', 'strict', :'receiver' || '/crm/alerts', '{ops@acme.example}');
INSERT INTO callback.campaigns (list_id, name) VALUES (2, 'vip preview');
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (2, 'rcs', '+306900000003', 'delivered');
SELECT pg_temp.wait_until($$SELECT NOT callbacks_enabled FROM callback.campaigns WHERE id = 2$$);
SELECT id, campaign_id, reason, notification_list FROM callback.alerts;
\echo '== Everyone on the notification list gets an email (shown at the end, as the relay got it)'
SELECT pg_temp.wait_until($$SELECT emails_sent = emails FROM callback.alert_summary$$);
SELECT alert_id, campaign_id, emails, emails_sent, emails_pending, emails_not_sent FROM callback.alert_summary;

\echo '== While disabled, its new callbacks are held, not dropped'
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (2, 'rcs', '+306900000004', 'delivered');
SELECT id, message_id, url, state, attempts, last_error FROM callback.callbacks WHERE campaign_id = 2 ORDER BY id;

\echo '== The history of every attempt'
SELECT pg_temp.wait_until($$SELECT bool_and(state <> 'pending') FROM callback.callbacks$$);
SELECT callback_id, event, attempt, http_status, round(extract(epoch FROM duration) * 1000, 1) AS ms,
       response_excerpt, error
FROM callback.history ORDER BY id;

\echo '== The report of every recipient of the first campaign (callback.campaign_report_csv() gives it as CSV)'
SELECT * FROM callback.campaign_report(1);
