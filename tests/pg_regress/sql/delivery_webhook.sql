-- The account's delivery-status webhook (seed 004): one per account, HTTPS only, and each
-- operation's error when the webhook exists or not.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Callbacks rendered in the transaction, to be looked at at once (the default, deferred,
-- renders them in the workers, which this cluster does not run: deferred.sql).
SET pg_callback.recording = immediate;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme'), ('globex');

-- None yet: get, update and revoke fail with 42704 (the 404 of the seed).
SELECT callback.delivery_webhook(1);
\echo :LAST_ERROR_SQLSTATE
SELECT callback.update_delivery_webhook(1, 'https://hooks.acme.example/dlr');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.revoke_delivery_webhook(1);
\echo :LAST_ERROR_SQLSTATE

-- Create: the URL must be well-formed HTTPS (the 400 of the seed).
SELECT callback.create_delivery_webhook(1, 'http://hooks.acme.example/dlr');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.create_delivery_webhook(1, 'https://');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.create_delivery_webhook(1, 'hooks.acme.example/dlr');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.create_delivery_webhook(1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS webhooks_after_bad_creates FROM callback.delivery_webhooks;

SELECT account_id, url FROM callback.create_delivery_webhook(1, 'https://hooks.acme.example/dlr');
SELECT callback.delivery_webhook(1);

-- A second create fails with 42710 (the 409 of the seed) and keeps the first URL.
SELECT callback.create_delivery_webhook(1, 'https://other.example/dlr');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.delivery_webhook(1);

-- Each account has its own.
SELECT callback.delivery_webhook(2);
\echo :LAST_ERROR_SQLSTATE
SELECT account_id, url FROM callback.create_delivery_webhook(2, 'https://globex.example/hooks/dlr');

-- Update: a bad URL is refused and the old one kept; a good one replaces it.
SELECT callback.update_delivery_webhook(1, 'ftp://hooks.acme.example/dlr');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.delivery_webhook(1);
SELECT account_id, url FROM callback.update_delivery_webhook(1, 'https://hooks2.acme.example/dlr');

-- An update takes effect for the next event; a callback already recorded keeps the old URL.
INSERT INTO callback.messages (account_id, channel, destination, status) VALUES (1, 'whatsapp', '+15550001', 'delivered');
SELECT callback.update_delivery_webhook(1, 'https://hooks3.acme.example/dlr') IS NOT NULL AS updated;
INSERT INTO callback.messages (account_id, channel, destination, status) VALUES (1, 'rcs', '+15550002', 'delivered');
SELECT message_id, target, url FROM callback.callbacks ORDER BY id;

-- Revoke: gone for later events, and a second revoke fails.
SELECT callback.revoke_delivery_webhook(1);
SELECT callback.revoke_delivery_webhook(1);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.messages (account_id, channel, destination, status) VALUES (1, 'sms', '+15550003', 'delivered');
SELECT count(*) AS callbacks FROM callback.callbacks;

-- Unknown accounts.
SELECT callback.create_delivery_webhook(99, 'https://x.example/dlr');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.delivery_webhook(NULL);
\echo :LAST_ERROR_SQLSTATE
