-- pg_callback demo: define a list and a campaign, change message statuses, and look at the
-- callbacks recorded in the same transactions, with their resolved URLs and bodies.
\pset pager off
\set SHOW_CONTEXT never

\echo '== An account, a list with a callback URL template, and a campaign created from the list'
INSERT INTO callback.accounts (name) VALUES ('acme crm');
INSERT INTO callback.lists (account_id, name, callback_url, callback_events, callback_headers, signing_secret)
VALUES (1, 'newsletter subscribers',
        'https://crm.acme.example/dlr/${customerId}?message=${id}&status=${status}',
        '{message.status,message.final}',
        '{"X-Crm-Tenant": "acme"}',
        callback.generate_signing_secret());
INSERT INTO callback.campaigns (list_id, name, event_urls, env)
VALUES (1, 'spring sale',
        '{"campaign.complete": "https://crm.acme.example/campaigns/${campaignId}/done?region=${region}"}',
        '{"region": "eu-west"}');
SELECT id, name, callback_url, callback_method, callback_format, retry_policy, overridden
FROM callback.campaigns;

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

\echo '== The callbacks recorded: target, resolved URL, headers, body'
SELECT id, event, target, method, url, headers FROM callback.callbacks ORDER BY id;
SELECT id, event, jsonb_pretty(body::jsonb) AS body FROM callback.callbacks
WHERE id IN (1, 3) OR event = 'campaign.complete' ORDER BY id;

\echo '== Bad input is refused with a SQLSTATE, and nothing is written'
INSERT INTO callback.campaigns (list_id, name) VALUES (42, 'orphan');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
UPDATE callback.lists SET callback_url = 'ftp://crm.acme.example/dlr';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
