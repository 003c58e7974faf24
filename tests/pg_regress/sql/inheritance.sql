-- Campaigns inherit their list's callback settings when created, keep what they customise,
-- and follow the list's later changes of every setting they did not customise.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_callback CASCADE;
CREATE EXTENSION pg_callback;

INSERT INTO callback.accounts (name) VALUES ('acme');
INSERT INTO callback.lists (account_id, name, callback_url, callback_format, callback_headers, retry_policy, env)
VALUES (1, 'customers', 'https://crm.example.com/dlr', 'xml', '{"X-Crm-Key": "k1"}', 'strict', '{"region": "eu"}');

-- At creation every setting comes from the list; nothing is the campaign's own.
INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'spring');
SELECT name, account_id, callback_url, callback_method, callback_format, callback_headers,
       retry_policy, env, overridden
FROM callback.campaigns;

-- A setting given at creation is the campaign's own; the rest still come from the list.
INSERT INTO callback.campaigns (list_id, name, callback_url, callback_method)
VALUES (1, 'summer', 'https://crm.example.com/summer', 'GET');
SELECT name, callback_url, callback_method, callback_format, overridden FROM callback.campaigns ORDER BY id;

-- Customising a campaign afterwards makes that setting its own.
UPDATE callback.campaigns SET retry_policy = 'standard' WHERE name = 'spring';
SELECT name, retry_policy, overridden FROM callback.campaigns WHERE name = 'spring';

-- A later change of the list's URL reaches campaigns that did not set their own URL;
-- a change of the retry policy reaches neither, since both set theirs.
UPDATE callback.lists SET callback_url = 'https://crm2.example.com/dlr', retry_policy = 'standard';
UPDATE callback.lists SET retry_policy = 'strict';
SELECT name, callback_url, retry_policy, overridden FROM callback.campaigns ORDER BY id;

-- Campaigns of other lists are untouched.
INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'partners', 'https://partners.example.com/dlr');
INSERT INTO callback.campaigns (list_id, name) VALUES (2, 'autumn');
UPDATE callback.lists SET callback_url = 'https://crm3.example.com/dlr' WHERE id = 1;
SELECT name, callback_url FROM callback.campaigns ORDER BY id;

-- reset_campaign_settings makes a campaign follow its list again, for the named settings or all.
-- It returns the settings the campaign still sets itself.
SELECT callback.reset_campaign_settings((SELECT id FROM callback.campaigns WHERE name = 'summer'), '{callback_url}') AS still_own;
SELECT callback.reset_campaign_settings((SELECT id FROM callback.campaigns WHERE name = 'spring')) AS still_own;
SELECT name, callback_url, callback_method, retry_policy, overridden FROM callback.campaigns ORDER BY id;
UPDATE callback.lists SET callback_url = 'https://crm4.example.com/dlr' WHERE id = 1;
SELECT name, callback_url, callback_method, overridden FROM callback.campaigns ORDER BY id;

-- Errors.
INSERT INTO callback.campaigns (list_id, name) VALUES (42, 'orphan');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO callback.campaigns (list_id, name) VALUES (NULL, 'orphan');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.reset_campaign_settings(1, '{callback_colour}');
\echo :LAST_ERROR_SQLSTATE
SELECT callback.reset_campaign_settings(99);
\echo :LAST_ERROR_SQLSTATE
UPDATE callback.campaigns SET list_id = 2 WHERE name = 'spring';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS campaigns FROM callback.campaigns;
