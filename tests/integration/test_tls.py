"""HTTPS as receivers run it: a receiver whose certificate a private CA issued (made here, at
test time, with trustme) is trusted once pg_callback.ca_bundle names that CA, and not before;
an expired certificate, or one for another name, fails the attempt with an error that says
which, and the callback is retried by its policy. Kept-alive connections carry many
callbacks over one handshake."""

import datetime

import psycopg
from psycopg import sql
import pytest

from conftest import Behaviour, tls_receiver
from helpers import make_list, send_message

UNTRUSTED = "TLS: the receiver's certificate is not trusted (unknown issuer: add its CA to pg_callback.ca_bundle)"


def errors(db):
    return [r[0] for r in db.sql("SELECT error FROM callback.deliveries ORDER BY id")]


def test_a_private_ca_is_trusted_once_the_bundle_names_it(db, ca, bundle):
    receiver = tls_receiver(ca, "127.0.0.1")
    try:
        make_list(db, receiver.url("/dlr"))
        send_message(db)
        # Untrusted: the attempt fails saying why, and the callback waits for its retry.
        db.wait_for("SELECT count(*) >= 2 FROM callback.deliveries", what="two refused attempts")
        assert set(errors(db)) == {UNTRUSTED}
        assert db.one("SELECT state FROM callback.callbacks") == "pending"
        assert receiver.received() == []

        bundle()
        db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="delivered once trusted")
        assert len(receiver.received("/dlr")) == 1
        assert errors(db)[-1] is None
    finally:
        receiver.close()


def test_expired_and_misnamed_certificates_fail_saying_which(db, ca, bundle):
    bundle()
    yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    expired = tls_receiver(ca, "127.0.0.1", not_before=yesterday - datetime.timedelta(days=30), not_after=yesterday)
    misnamed = tls_receiver(ca, "hooks.example.test")
    try:
        make_list(db, expired.url("/expired"))
        db.sql("INSERT INTO callback.subscriptions (account_id, name, callback_url, events) "
               "VALUES (1, 'misnamed', %s, '{message.status}')", [misnamed.url("/misnamed")])
        send_message(db)
        db.wait_for("SELECT bool_and(attempts >= 2) AND count(*) = 2 FROM callback.callbacks",
                    what="both retried")
        said = {row[0]: row[1] for row in db.sql(
            "SELECT split_part(c.url, '/', 4), d.error FROM callback.deliveries d "
            "JOIN callback.callbacks c ON c.id = d.callback_id")}
        assert said == {"expired": "TLS: the receiver's certificate has expired",
                        "misnamed": "TLS: the receiver's certificate is for another name"}
        assert db.one("SELECT bool_and(state = 'pending') FROM callback.callbacks")
        assert expired.received() == [] and misnamed.received() == []
    finally:
        expired.close()
        misnamed.close()


def test_kept_alive_connections_carry_many_callbacks(db, ca, bundle):
    bundle()
    receiver = tls_receiver(ca, "127.0.0.1")
    try:
        make_list(db, receiver.url("/dlr"))
        # One message's reports go one after the other (same order key): over one connection.
        message = send_message(db, status="queued", intermediate_reports=True)
        for status in ["accepted", "sent", "ringing", "in-progress", "delivered"]:
            db.sql("UPDATE callback.messages SET status = %s WHERE id = %s", [status, message])
        receiver.wait_for(6, "/dlr")
        db.wait_for("SELECT bool_and(state = 'delivered') FROM callback.callbacks", what="all delivered")
        assert receiver.accepted < 6, f"{receiver.accepted} connections for 6 requests"
    finally:
        receiver.close()


def test_new_connections_resume_the_tls_session(one_worker, db, ca, bundle):
    bundle()
    receiver = tls_receiver(ca, "127.0.0.1")
    # Every answer closes its connection, so each report needs a new one: its handshake
    # resumes the session of the one before (a ticket), instead of a full handshake. Sessions
    # are kept per worker process: with two, a report sent by the other worker would make a
    # full handshake of its own, so this runs with one.
    receiver.respond("/dlr", Behaviour(headers={"Connection": "close"}))
    try:
        make_list(db, receiver.url("/dlr"))
        message = send_message(db, status="queued", intermediate_reports=True)
        for status in ["accepted", "sent", "ringing"]:
            db.sql("UPDATE callback.messages SET status = %s WHERE id = %s", [status, message])
        receiver.wait_for(4, "/dlr")
        db.wait_for("SELECT bool_and(state = 'delivered') FROM callback.callbacks", what="all delivered")
        assert len(receiver.resumed) >= 4, receiver.resumed
        assert receiver.resumed[0] is False and all(receiver.resumed[1:]), receiver.resumed
    finally:
        receiver.close()


def test_a_bundle_that_cannot_be_used_is_refused(db):
    for value, detail in [("/nonexistent/ca.pem", "cannot read /nonexistent/ca.pem"),
                          ("/etc/hostname", "holds no certificate")]:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            db.sql("ALTER SYSTEM SET pg_callback.ca_bundle = %s" % sql.quote(value), dbname="postgres")
        assert detail in str(refused.value.diag.message_detail), refused.value.diag.message_detail
