"""Callbacks leave the database over HTTP: methods, formats, credentials, headers, signatures
(checked by the independent standardwebhooks package), the history of each attempt."""

import base64
from urllib.parse import parse_qs

import pytest
from standardwebhooks.webhooks import Webhook

from conftest import Behaviour
from helpers import make_list, send_message


def test_a_committed_status_change_is_posted_as_json(db, receiver):
    make_list(db, receiver.url("/dlr/${id}"), callback_headers={"X-Crm-Tenant": "acme"})
    message = send_message(db, callback_data="order=981")
    [request] = receiver.wait_for(1)
    assert request.method == "POST"
    assert request.path == f"/dlr/{message}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-crm-tenant"] == "acme"
    body = request.json()
    assert body["type"] == "message.status"
    assert body["data"]["message_id"] == message
    assert body["data"]["status"] == "delivered"
    assert body["data"]["callback_data"] == "order=981"
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="the callback marked delivered")
    [(attempt, http_status, excerpt, error)] = db.sql(
        "SELECT attempt, http_status, response_excerpt, error FROM callback.message_history(%s)", [message])
    assert (attempt, http_status, excerpt, error) == (1, 200, "ok", None)


def test_delivered_callbacks_leave_the_queue(db, receiver):
    """The workers' queue (callbacks_undone) holds only what is not done; a delivered callback
    is done by the history row of the attempt that delivered it (marked with the outcome, no
    row of its own), read through callbacks_done, callback.callbacks and the history."""
    make_list(db, receiver.url("/dlr/${id}"))
    db.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status)
              SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, 20) g""")
    receiver.wait_for(20)
    db.wait_for("SELECT count(*) = 20 FROM callback.callbacks_done", what="20 callbacks done")
    assert db.one("SELECT count(*) FROM callback.callbacks_undone") == 0
    assert db.one("SELECT count(*) FROM callback.callbacks_ended") == 0
    assert db.one("SELECT count(*) FROM callback.deliveries WHERE outcome = 'delivered'") == 20
    assert db.one("""SELECT count(*) FROM callback.callbacks
                     WHERE state = 'delivered' AND attempts = 1 AND last_http_status = 200
                       AND finished_at BETWEEN recorded_at AND now()""") == 20
    assert db.one("SELECT count(*) FROM callback.history WHERE http_status = 200") == 20


def test_a_callback_is_done_once_however_it_ended(db, receiver):
    """Replayed, a delivered callback keeps its history and is done again by its new attempt;
    an administrator's state replaces how it ended; purged, nothing of it is left."""
    make_list(db, receiver.url("/dlr"))
    send_message(db)
    receiver.wait_for(1)
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="the callback delivered")
    callback = db.one("SELECT id FROM callback.callbacks")
    ended = "SELECT state, attempts, last_error FROM callback.callbacks_done WHERE id = %s"
    outcomes = "SELECT attempt, outcome::text FROM callback.deliveries WHERE callback_id = %s ORDER BY id"

    with db.connect() as conn, conn.transaction():
        conn.execute("SELECT callback.replay(%s)", [callback])
        assert conn.execute(ended, [callback]).fetchall() == []
        assert conn.execute(outcomes, [callback]).fetchall() == [(1, None)]
    receiver.wait_for(2)
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="the replay delivered")
    assert db.sql(outcomes, [callback]) == [(1, None), (1, "delivered")]
    assert db.sql(ended, [callback]) == [("delivered", 1, None)]

    db.sql("UPDATE callback.callbacks SET state = 'failed', last_error = 'given up by hand' WHERE id = %s", [callback])
    assert db.sql(ended, [callback]) == [("failed", 1, "given up by hand")]
    assert db.sql(outcomes, [callback]) == [(1, None), (1, None)]

    db.sql("""UPDATE callback.callbacks SET state = 'delivered', last_error = NULL,
                                            finished_at = now() - interval '2 days' WHERE id = %s""", [callback])
    assert db.one("SELECT callback.purge('1 day')") == 1
    left = """SELECT (SELECT count(*) FROM callback.requests) + (SELECT count(*) FROM callback.callbacks_ended)
                     + (SELECT count(*) FROM callback.deliveries)"""
    assert db.one(left) == 0


def test_purge_deletes_callbacks_delivered_by_an_attempt(db, receiver):
    make_list(db, receiver.url("/dlr"))
    send_message(db)
    receiver.wait_for(1)
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="the callback delivered")
    assert db.one("SELECT callback.purge('1 hour')") == 0
    assert db.one("SELECT callback.purge('0')") == 1
    assert db.one("SELECT count(*) FROM callback.requests") == 0
    assert db.one("SELECT count(*) FROM callback.deliveries") == 0


@pytest.mark.parametrize("recording", ["deferred", "immediate"])
def test_settings_changes_reach_a_session_that_recorded_before(db, receiver, recording):
    """Rendering keeps campaign and list settings per session (the worker's for deferred
    recording, the application's for immediate); a change committed elsewhere, or made earlier
    in the same transaction, is used from then on."""
    make_list(db, receiver.url("/before"))
    insert = "INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+1', 'delivered')"
    with db.connect() as app:
        app.execute(f"SET pg_callback.recording = {recording}")
        app.execute(insert)
        receiver.wait_for(1, "/before")
        db.sql("UPDATE callback.lists SET callback_url = %s", [receiver.url("/after")])
        app.execute(insert)
        receiver.wait_for(1, "/after")
        with app.transaction():
            app.execute("UPDATE callback.campaigns SET callback_url = %s", [receiver.url("/own")])
            app.execute(insert)
        receiver.wait_for(1, "/own")
        db.sql("SELECT callback.disable_campaign_callbacks(1)")
        message = app.execute(insert + " RETURNING id").fetchone()[0]
        db.wait_for("SELECT state = 'held' FROM callback.callbacks WHERE message_id = %s", [message],
                    what="the callback held")


def test_a_rolled_back_change_sends_nothing(db, receiver):
    make_list(db, receiver.url("/dlr"))
    with db.connect(autocommit=False) as conn:
        conn.execute("INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+1', 'delivered')")
        conn.rollback()
    send_message(db, destination="+2")
    [request] = receiver.wait_for(1)
    assert request.json()["data"]["destination"] == "+2"


def test_get_xml_and_form_targets(db, receiver):
    make_list(db, receiver.url("/get?id=${id}&status=${status}"), callback_method="GET")
    message = send_message(db)
    [get] = receiver.wait_for(1, "/get")
    assert get.method == "GET" and get.body == b""
    assert get.path == f"/get?id={message}&status=delivered"

    db.sql("UPDATE callback.lists SET callback_method = 'POST', callback_url = %s, callback_format = 'xml'", [receiver.url("/xml")])
    send_message(db)
    [xml] = receiver.wait_for(1, "/xml")
    assert xml.headers["content-type"] == "application/xml; charset=utf-8"
    assert xml.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><callback><data>')
    assert b"<status>delivered</status>" in xml.body

    db.sql("UPDATE callback.lists SET callback_url = %s, callback_format = 'form'", [receiver.url("/form")])
    message = send_message(db)
    [form] = receiver.wait_for(1, "/form")
    fields = parse_qs(form.body.decode())
    assert fields["type"] == ["message.status"]
    assert fields["data[message_id]"] == [str(message)]


def test_credentials_are_sent(db, receiver):
    make_list(db, receiver.url("/basic"), callback_basic_auth="crm:s3cret")
    send_message(db)
    [basic] = receiver.wait_for(1, "/basic")
    assert basic.headers["authorization"] == "Basic " + base64.b64encode(b"crm:s3cret").decode()

    db.sql("UPDATE callback.lists SET callback_url = %s, callback_basic_auth = NULL, callback_bearer_token = 'tok_123'",
           [receiver.url("/bearer")])
    send_message(db)
    [bearer] = receiver.wait_for(1, "/bearer")
    assert bearer.headers["authorization"] == "Bearer tok_123"


def test_signatures_verify_with_standard_webhooks(db, receiver):
    secret = db.one("SELECT callback.generate_signing_secret()")
    make_list(db, receiver.url("/signed"), signing_secret=secret)
    send_message(db)
    [request] = receiver.wait_for(1, "/signed")
    verified = Webhook(secret).verify(request.body, request.headers)
    assert verified["type"] == "message.status"
    assert request.headers["webhook-id"] == db.one("SELECT webhook_id::text FROM callback.callbacks")
    with pytest.raises(Exception):
        Webhook(secret).verify(request.body.replace(b"delivered", b"failed"), request.headers)


def test_the_webhook_id_stays_the_same_across_retries(db, receiver):
    make_list(db, receiver.url("/flaky"))
    receiver.respond("/flaky", Behaviour(status=500), Behaviour(status=500), Behaviour(status=200))
    send_message(db)
    requests = receiver.wait_for(3, "/flaky")
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks")
    history = db.sql("SELECT attempt, http_status, error FROM callback.history ORDER BY id")
    assert history == [(1, 500, "HTTP 500 is not a success"), (2, 500, "HTTP 500 is not a success"), (3, 200, None)]


def test_redirects_are_not_followed(db, receiver):
    make_list(db, receiver.url("/moved"))
    receiver.respond("/moved", Behaviour(status=302, headers={"Location": receiver.url("/elsewhere")}),
                     Behaviour(status=200))
    send_message(db)
    receiver.wait_for(2, "/moved")
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks")
    assert receiver.received("/elsewhere") == []
    assert [r[0] for r in db.sql("SELECT http_status FROM callback.campaign_history(1)")] == [302, 200]


def test_an_attached_application_table_delivers_like_messages(db, receiver):
    make_list(db, receiver.url("/crm/${id}"))
    db.sql("DROP TABLE IF EXISTS public.crm_sms")
    db.sql("CREATE TABLE public.crm_sms (sms_id int PRIMARY KEY, campaign int, phone text, state text)")
    try:
        db.sql("""SELECT callback.attach('public.crm_sms', 'sms_id', 'state', campaign_column => 'campaign',
                                         destination_column => 'phone')""")
        db.sql("INSERT INTO public.crm_sms VALUES (41, 1, '+15550041', 'queued')")
        db.sql("UPDATE public.crm_sms SET state = 'delivered'")
        [request] = receiver.wait_for(1)
        assert request.path == "/crm/41"
        data = request.json()["data"]
        assert (data["message_id"], data["status"], data["previous_status"], data["destination"]) == \
            (41, "delivered", "queued", "+15550041")
        db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="the callback delivered")
        # Detached, a change records nothing.
        db.sql("SELECT callback.detach('public.crm_sms')")
        db.sql("UPDATE public.crm_sms SET state = 'read'")
        assert db.one("SELECT count(*) FROM callback.callbacks") == 1
    finally:
        db.sql("DROP TABLE public.crm_sms")
