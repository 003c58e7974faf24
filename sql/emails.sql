-- Alert emails (seed 001): when a campaign's callbacks are disabled, every address on its
-- notification_list gets an email from the workers (src/deliver/emails.rs), through the SMTP
-- relay the pg_callback.smtp_* settings name. Queued here in the transaction that raised the
-- alert, retried like callbacks, never in the way of delivery; with no relay set, each says it
-- was not sent and why.

CREATE TABLE callback.alert_emails (
    account_id bigint NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    alert_id bigint NOT NULL,
    address text NOT NULL,
    state text NOT NULL DEFAULT 'pending'
        CONSTRAINT state_pending_sent_failed_or_not_sent CHECK (state IN ('pending', 'sent', 'failed', 'not_sent')),
    attempts int NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    leased_by int,
    sent_at timestamptz,
    last_error text,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX alert_emails_due ON callback.alert_emails (due_at) WHERE state = 'pending';
CREATE INDEX alert_emails_alert ON callback.alert_emails (alert_id);
COMMENT ON TABLE callback.alert_emails IS 'One email per address of an alert''s notification list: pending (due_at, attempts), sent, failed (the relay refused it, or every attempt failed), or not_sent (no relay was set). Written by the workers.';
SELECT pg_catalog.pg_extension_config_dump('callback.alert_emails', '');
SELECT pg_catalog.pg_extension_config_dump(pg_get_serial_sequence('callback.alert_emails', 'id')::regclass, '');

CREATE FUNCTION callback._queue_alert_emails() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO callback.alert_emails (account_id, alert_id, address)
    SELECT DISTINCT NEW.account_id, NEW.id, a FROM unnest(NEW.notification_list) a;
    IF FOUND THEN
        PERFORM callback._wake_on_commit();
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alerts_queue_emails AFTER INSERT ON callback.alerts
    FOR EACH ROW EXECUTE FUNCTION callback._queue_alert_emails();

CREATE VIEW callback.alert_summary WITH (security_invoker = true) AS
SELECT a.id AS alert_id, a.account_id, a.campaign_id, a.callback_id, a.raised_at, a.reason,
       count(e.id) AS emails,
       count(e.id) FILTER (WHERE e.state = 'sent') AS emails_sent,
       count(e.id) FILTER (WHERE e.state = 'pending') AS emails_pending,
       count(e.id) FILTER (WHERE e.state IN ('failed', 'not_sent')) AS emails_not_sent,
       (array_agg(e.last_error ORDER BY e.id) FILTER (WHERE e.state <> 'sent' AND e.last_error IS NOT NULL))[1]
           AS email_error
FROM callback.alerts a
LEFT JOIN callback.alert_emails e ON e.account_id = a.account_id AND e.alert_id = a.id
GROUP BY a.id;
COMMENT ON VIEW callback.alert_summary IS 'Each alert and what became of its emails: how many, sent, still being tried, not sent (failed, or no relay), and why the first not sent was not.';
