-- Tenants: an account's rows are visible and changeable only by the roles granted it; they may
-- write credentials and signing secrets but not read them; callback_admin's members see all;
-- other roles see nothing. Real roles, switched with SET ROLE.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
DROP ROLE IF EXISTS acme_app;
DROP ROLE IF EXISTS globex_app;
DROP ROLE IF EXISTS ops;
DROP ROLE IF EXISTS outsider;
CREATE EXTENSION pg_callback;
CREATE ROLE acme_app;
CREATE ROLE globex_app;
CREATE ROLE ops;
CREATE ROLE outsider;
GRANT callback_admin TO ops;

-- Two accounts, each with a list (with credentials), a campaign, a message and its callback.
INSERT INTO callback.accounts (name) VALUES ('acme'), ('globex');
SELECT callback.grant_account(1, 'acme_app'), callback.grant_account(2, 'globex_app');
INSERT INTO callback.lists (account_id, name, callback_url, signing_secret, callback_bearer_token) VALUES
    (1, 'acme customers', 'https://acme.example.com/dlr', 'whsec_' || encode('acme secret, 24 bytes...', 'base64'), 'acme-token'),
    (2, 'globex customers', 'https://globex.example.com/dlr', 'whsec_' || encode('globex secret, 24 bytes.', 'base64'), 'globex-token');
INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'acme spring'), (2, 'globex spring');
INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+1', 'delivered'), (2, 'sms', '+2', 'delivered');
INSERT INTO callback.deliveries (callback_id, account_id, attempt, started_at, duration, http_status, response_excerpt)
VALUES (1, 1, 1, now(), '1 ms', 200, 'ok'), (2, 2, 1, now(), '1 ms', 200, 'ok');
UPDATE callback.callbacks SET state = 'delivered', finished_at = now();

CREATE TEMP VIEW seen WITH (security_invoker = true) AS
SELECT (SELECT count(*) FROM callback.accounts) AS accounts, (SELECT count(*) FROM callback.lists) AS lists,
       (SELECT count(*) FROM callback.campaigns) AS campaigns, (SELECT count(*) FROM callback.messages) AS messages,
       (SELECT count(*) FROM callback.callbacks) AS callbacks, (SELECT count(*) FROM callback.history) AS history,
       (SELECT count(*) FROM callback.deliveries) AS deliveries;
GRANT SELECT ON seen TO PUBLIC;

-- A tenant sees its account's rows only.
SET ROLE acme_app;
SELECT * FROM seen;
SELECT a.name AS account, l.name AS list, c.name AS campaign FROM callback.accounts a
JOIN callback.lists l ON l.account_id = a.id JOIN callback.campaigns c ON c.list_id = l.id;

-- It cannot read credentials or signing secrets, of lists, campaigns or callbacks (their requests) ...
SELECT signing_secret FROM callback.lists;
\echo :LAST_ERROR_SQLSTATE
SELECT callback_bearer_token FROM callback.campaigns;
\echo :LAST_ERROR_SQLSTATE
SELECT auth_header FROM callback.requests;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM callback.lists;
\echo :LAST_ERROR_SQLSTATE
-- ... but sets them, and the callbacks its status changes record carry them.
UPDATE callback.lists SET callback_bearer_token = 'acme-token-2';
UPDATE callback.messages SET status = 'read';
RESET ROLE;
SELECT account_id, state, auth_header FROM callback.callbacks JOIN callback.requests USING (id, account_id) ORDER BY id;
SET ROLE acme_app;
-- Deferred, its status changes store events it may not write itself: the first with the
-- statuses read as the extension's owner, the second from what that read cached.
SET pg_callback.recording = deferred;
UPDATE callback.messages SET status = 'delivered';
UPDATE callback.messages SET status = 'read';
SET pg_callback.recording = immediate;
SELECT count(*) FROM callback.events;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT account_id, message_id, previous_status, status FROM callback.events ORDER BY id;
DELETE FROM callback.events;
SET ROLE acme_app;

-- The other account's rows: updates and deletes find none ...
UPDATE callback.lists SET callback_url = 'https://evil.example/' WHERE id = 2 RETURNING id;
DELETE FROM callback.messages WHERE id = 2 RETURNING id;
-- (and a callback's state is not a tenant's to write at all)
UPDATE callback.callbacks SET state = 'pending' WHERE id = 2 RETURNING id;
\echo :LAST_ERROR_SQLSTATE
-- ... and rows for it are refused, directly or through its list or campaign (which it cannot see).
INSERT INTO callback.lists (account_id, name) VALUES (2, 'planted');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.campaigns (list_id, name) VALUES (2, 'planted');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.messages (campaign_id, channel, destination) VALUES (2, 'sms', '+3');
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.messages SET account_id = 2;
\echo :LAST_ERROR_SQLSTATE
-- Functions see what the role sees.
SELECT callback.disable_campaign_callbacks(2);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.replay(2);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.create_delivery_webhook(2, 'https://evil.example/');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.reset_campaign_settings(2);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS globex_history FROM callback.campaign_history(2);
-- What the workers own it cannot change itself, not even for its own callbacks: state,
-- attempts, lease, due time, history. Replaying, retrying now and replaying many are the ways.
UPDATE callback.callbacks SET state = 'pending', attempts = 0 WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.callbacks SET leased_until = NULL, leased_by = NULL WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.callbacks SET due_at = now() WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.deliveries (callback_id, account_id, attempt, started_at, duration, http_status) VALUES (1, 1, 2, now(), '1 ms', 200);
\echo :LAST_ERROR_SQLSTATE
DELETE FROM callback.deliveries;
\echo :LAST_ERROR_SQLSTATE
SELECT callback.replay_all(campaign_id => 2);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.cancel(2);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.replay_all(state => 'delivered') AS replayed_of_its_own;
RESET ROLE;
SELECT id, account_id, state FROM callback.callbacks ORDER BY id;
UPDATE callback.callbacks SET state = 'delivered', finished_at = now() WHERE id = 1;
SET ROLE acme_app;
-- Its own work: replay, reset, disable, a delivery-status webhook.
SELECT id, state, attempts FROM callback.replay(1);
SELECT callback.reset_campaign_settings(1) AS still_own;
SELECT callback.disable_campaign_callbacks(1);
SELECT account_id, url FROM callback.create_delivery_webhook(1, 'https://acme.example.com/status');
-- Recording, purging, granting, accounts and shared settings are not a tenant's.
SELECT callback._record_event('message.status', 2, 2, 2, NULL, 'sms', NULL, NULL, '{}', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.purge('0');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.grant_account(2, 'acme_app');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.accounts (name) VALUES ('acme too');
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.retry_policies SET max_attempts = 100;
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.callbacks SET url = 'https://evil.example/';
\echo :LAST_ERROR_SQLSTATE
-- Its signing secrets rotate through the function, which it may call for its own targets only;
-- the overlapping secrets it cannot read.
SELECT callback.rotate_signing_secret('list', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.rotate_signing_secret('list', 1) LIKE 'whsec_%' AS rotated_its_own;
SELECT count(*) FROM callback.signing_secret_overlaps;
\echo :LAST_ERROR_SQLSTATE

-- The other tenant, likewise; nothing of acme's changed globex's rows.
SET ROLE globex_app;
SELECT * FROM seen;
SELECT name, callback_url, callbacks_enabled FROM callback.campaigns;
SELECT count(*) AS webhooks FROM callback.delivery_webhooks;

-- A role granted no account cannot even look.
SET ROLE outsider;
SELECT count(*) FROM callback.lists;
\echo :LAST_ERROR_SQLSTATE

-- An administrator sees everything, credentials included.
SET ROLE ops;
SELECT * FROM seen;
SELECT id, callback_bearer_token FROM callback.lists ORDER BY id;
RESET ROLE;

-- Revoking the account: the role sees nothing again.
SELECT callback.revoke_account(1, 'acme_app');
SET ROLE acme_app;
SELECT count(*) FROM callback.lists;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT callback.revoke_account(1, 'acme_app');
\echo :LAST_ERROR_SQLSTATE

-- A session of a tenant's own cannot act for a role it could not become: the internal
-- functions that change callbacks check the role they are told.
ALTER ROLE globex_app LOGIN;
\c - globex_app
SET client_min_messages = warning;
SELECT callback._replay(1, 'acme_app');
\echo :LAST_ERROR_SQLSTATE
SELECT callback._replay_all(NULL, NULL, NULL, 'delivered', 'ops');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.retry_now(1);
\echo :LAST_ERROR_SQLSTATE
\c - postgres
ALTER ROLE globex_app NOLOGIN;
