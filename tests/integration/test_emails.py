"""Alert emails (seed 001): when a campaign's callbacks are disabled, every address on its
notification list gets an email through the SMTP relay the settings name (a real SMTP server
started here, aiosmtpd, speaking STARTTLS with a certificate of the test CA and wanting a
login), saying which campaign, callback and URL failed, after how many attempts, the last
status and error, and how to enable the callbacks again. With no relay set, the alert says the
emails were not sent and why."""

import ssl

from conftest import Behaviour, SmtpRelay
from helpers import make_list, send_message

PEOPLE = ["ops@acme.example", "dev@acme.example"]


def fail_strict_campaign(db, receiver):
    """A strict campaign whose one callback fails its three attempts: its callbacks are disabled
    and an alert raised for PEOPLE; returns the failed callback's id."""
    receiver.respond("/dlr", Behaviour(status=500))
    make_list(db, receiver.url("/dlr"), retry_policy="strict", notification_list=PEOPLE)
    send_message(db)
    db.wait_for("SELECT NOT callbacks_enabled FROM callback.campaigns WHERE id = 1", timeout=15,
                what="the campaign's callbacks disabled")
    return db.one("SELECT id FROM callback.callbacks WHERE state = 'failed'")


def test_the_notification_list_gets_an_email_through_the_relay(db, receiver, ca, bundle, settings):
    bundle()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    relay = SmtpRelay(tls=context, login=("alerts", "s3cret")).up()
    try:
        settings(smtp_host="127.0.0.1", smtp_port=relay.port, smtp_security="starttls", smtp_user="alerts",
                 smtp_password="s3cret", smtp_from="Callbacks <callbacks@platform.example>")
        failed = fail_strict_campaign(db, receiver)
        emails = relay.wait_for(2)
        assert sorted(m["To"] for m in emails) == sorted(PEOPLE)
        message = emails[0]
        assert message["From"] == "Callbacks <callbacks@platform.example>"
        assert message["Subject"] == 'pg_callback: callbacks of campaign 1 "spring" disabled'
        body = message.get_payload(decode=True).decode()
        for said in [f"Callback:         {failed}", f"URL:              {receiver.url('/dlr')}",
                     "Attempts:         3", "Last HTTP status: 500", "Last error:       HTTP 500 is not a success",
                     "SELECT callback.enable_campaign_callbacks(1);"]:
            assert said in body, body
        db.wait_for("SELECT emails_sent = 2 FROM callback.alert_summary", what="both recorded as sent")
        assert db.one("SELECT bool_and(state = 'sent' AND sent_at IS NOT NULL) FROM callback.alert_emails")
    finally:
        relay.down()


def test_without_a_relay_the_alert_says_the_emails_were_not_sent(db, receiver, cluster):
    fail_strict_campaign(db, receiver)
    db.wait_for("SELECT emails_not_sent = 2 FROM callback.alert_summary", what="the emails marked not sent")
    assert db.one("SELECT email_error FROM callback.alert_summary") == \
        "not sent: no SMTP relay is set (pg_callback.smtp_host)"
    assert db.one("SELECT count(*) FROM callback.alert_emails WHERE state = 'not_sent'") == 2
    assert "alert emails are not sent: no SMTP relay is set" in cluster.log()


def test_a_relay_that_refuses_a_recipient_for_good_fails_that_email_only(db, receiver, settings):
    """A 5xx from the relay is final for that address; the others are sent."""
    relay = SmtpRelay().up()

    async def refuse_ops(server, session, envelope, address, rcpt_options):
        if address.startswith("ops@"):
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    relay.handler.handle_RCPT = refuse_ops
    try:
        settings(smtp_host="127.0.0.1", smtp_port=relay.port, smtp_security="off",
                 smtp_from="callbacks@platform.example")
        fail_strict_campaign(db, receiver)
        relay.wait_for(1)
        db.wait_for("SELECT emails_sent = 1 AND emails_not_sent = 1 FROM callback.alert_summary",
                    what="one sent, one failed")
        state, attempts, error = db.sql("SELECT state, attempts, last_error FROM callback.alert_emails "
                                        "WHERE address = 'ops@acme.example'")[0]
        assert (state, attempts) == ("failed", 1)
        assert error.startswith("SMTP: ") and "550" in error, error
    finally:
        relay.down()
