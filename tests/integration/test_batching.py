"""Batched reports (seed 002's shape): a target that asks for it gets its events several to a
request, {"results": [...]} in the order they happened (XML and form bodies alike), at most
max_count events and max_bytes of body, a partial batch going once its first event has waited
max_wait. A batch is signed over its whole body, retried whole, and each event's history shows
every attempt of its batch."""

import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from conftest import Behaviour
from helpers import make_list

SEND = "INSERT INTO callback.messages (campaign_id, channel, destination, status) SELECT 1, 'sms', '+1555' || i, 'delivered' FROM generate_series(1, %s) i"


def send_many(db, count, recording="deferred"):
    """`count` messages of campaign 1 delivered in one transaction; returns a time before it
    began (its events were recorded after)."""
    with db.connect() as app:
        app.execute(f"SET pg_callback.recording = {recording}")
        before = time.time()
        app.execute(SEND, [count])
    return before


def destinations(request):
    return [event["data"]["destination"] for event in request.json()["results"]]


@pytest.mark.parametrize("recording", ["deferred", "immediate"])
def test_events_go_in_signed_batches_in_order_each_with_its_history(db, receiver, recording):
    secret = db.one("SELECT callback.generate_signing_secret()")
    make_list(db, receiver.url("/batched"), signing_secret=secret)
    db.sql("SELECT callback.set_batching('list', 1, 3, max_wait => '300 milliseconds')")
    sent = send_many(db, 7, recording)

    # Batches go side by side: in order within each, and one after another by their events.
    requests = sorted(receiver.wait_for(3, "/batched"), key=lambda r: destinations(r)[0])
    assert [len(r.json()["results"]) for r in requests] == [3, 3, 1]
    assert sum((destinations(r) for r in requests), []) == [f"+1555{i}" for i in range(1, 8)]
    # The last, not full, went once its first event had waited max_wait.
    assert requests[2].at >= sent + 0.3
    for request in requests:
        verified = Webhook(secret).verify(request.body, request.headers)
        assert [e["type"] for e in verified["results"]] == ["message.status"] * len(verified["results"])
        assert request.headers["content-type"] == "application/json"

    db.wait_for("SELECT count(*) = 3 FROM callback.callbacks WHERE state = 'delivered'", what="three batches delivered")
    assert sorted(db.sql("SELECT batch_size FROM callback.callbacks")) == [(1,), (3,), (3,)]
    assert db.sql("SELECT callbacks, events, events_delivered FROM callback.campaign_summary") == [(3, 7, 7)]
    # Each message's history: the one attempt its batch made.
    for message_id in range(1, 8):
        [(event, status, size)] = db.sql("SELECT event::text, http_status, batch_size FROM callback.message_history(%s)",
                                          [message_id])
        assert (event, status) == ("message.status", 200)
        assert size == (1 if message_id == 7 else 3)
    assert db.one("SELECT count(*) FROM callback.campaign_history(1)") == 7
    assert db.one("SELECT count(*) FROM callback.batch_events WHERE callback_id IS NULL") == 0


def test_a_batch_is_retried_whole(db, receiver):
    db.sql("INSERT INTO callback.retry_policies (name, kind, max_attempts, step, timeout) VALUES ('quick', 'fixed', 3, '1 second', '5 seconds')")
    make_list(db, receiver.url("/flaky"), retry_policy="quick")
    db.sql("SELECT callback.set_batching('list', 1, 5)")
    receiver.respond("/flaky", Behaviour(status=503), Behaviour(status=200))
    send_many(db, 5)
    first, second = receiver.wait_for(2, "/flaky")
    assert first.body == second.body and first.headers["webhook-id"] == second.headers["webhook-id"]
    assert len(second.json()["results"]) == 5
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="the batch delivered")
    for message_id in range(1, 6):
        assert db.sql("SELECT attempt, http_status FROM callback.message_history(%s)", [message_id]) == [(1, 503), (2, 200)]


def test_bytes_bound_batches_in_xml_and_form_too(db, receiver):
    make_list(db, receiver.url("/xml"), callback_format="xml")
    db.sql("SELECT callback.set_batching('list', 1, 100, max_bytes => 1024, max_wait => '100 milliseconds')")
    send_many(db, 10)
    db.wait_for("SELECT count(*) = 10 FROM callback.history WHERE http_status = 200", what="ten events delivered")
    requests = receiver.received("/xml")
    assert len(requests) > 1 and all(len(r.body) <= 1024 for r in requests)
    batches = []
    for r in requests:
        assert r.headers["content-type"] == "application/xml; charset=utf-8"
        root = ET.fromstring(r.body)
        assert root.tag == "results"
        batches.append([(int(c.find("data/message_id").text), c.find("data/destination").text)
                        for c in root.findall("callback")])
    seen = sum(sorted(batches), [])
    assert [destination for _, destination in seen] == [f"+1555{i}" for i in range(1, 11)]

    db.sql("UPDATE callback.lists SET callback_format = 'form', callback_url = %s", [receiver.url("/form")])
    db.sql("SELECT callback.set_batching('list', 1, 100, max_wait => '100 milliseconds')")
    send_many(db, 2)
    [form] = receiver.wait_for(1, "/form")
    fields = parse_qs(form.body.decode())
    assert fields["results[0][data][destination]"] == ["+15551"]
    assert fields["results[1][type]"] == ["message.status"]


def test_batches_go_side_by_side_yet_each_messages_events_in_order(db, receiver):
    """A target's batches are sent at once; an event whose message is in a batch not done yet
    waits for it, so the receiver gets each message's events in order."""
    make_list(db, receiver.url("/side"))
    receiver.respond("/side", Behaviour(delay=0.2))
    db.sql("SELECT callback.set_batching('list', 1, 4, max_wait => '50 milliseconds')")
    db.sql("INSERT INTO callback.messages (campaign_id, channel, destination, status, intermediate_reports) "
           "SELECT 1, 'sms', '+1555' || i, 'queued', true FROM generate_series(1, 40) i")
    for status in ("sent", "delivered"):
        db.sql("UPDATE callback.messages SET status = %s", [status])
    db.wait_for("SELECT count(*) = 120 FROM callback.history WHERE http_status = 200 AND event = 'message.status'",
                timeout=20, what="120 status events delivered")
    by_message = {}
    requests = receiver.received("/side")
    for r in requests:
        for event in r.json()["results"]:
            if event["type"] == "message.status":
                by_message.setdefault(event["data"]["message_id"], []).append(event["data"]["status"])
    assert len(by_message) == 40
    assert all(statuses == ["queued", "sent", "delivered"] for statuses in by_message.values()), by_message
    assert db.one("SELECT max(batch_size) FROM callback.callbacks") == 4
    # Side by side: a batch arrived while another was still being answered (0.2 s each).
    arrivals = sorted(r.at for r in requests)
    assert any(later - earlier < 0.1 for earlier, later in zip(arrivals, arrivals[1:]))


def test_a_subscription_batches_per_campaign(db, receiver):
    make_list(db, receiver.url("/list"))
    db.sql("INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'autumn')")
    db.sql("INSERT INTO callback.subscriptions (account_id, name, callback_url, events) "
           "VALUES (1, 'copies', %s, '{message.status}')", [receiver.url("/copies")])
    db.sql("SELECT callback.set_batching('subscription', 1, 10, max_wait => '100 milliseconds')")
    db.sql("INSERT INTO callback.messages (campaign_id, channel, destination, status) "
           "SELECT 1 + i % 2, 'sms', '+1555' || i, 'delivered' FROM generate_series(1, 6) i")
    requests = receiver.wait_for(2, "/copies")
    assert sorted({e["data"]["campaign_id"] for e in r.json()["results"]}.pop() for r in requests) == [1, 2]
    assert sorted(len(r.json()["results"]) for r in requests) == [3, 3]


@pytest.mark.parametrize("call, sqlstate", [
    ("SELECT callback.set_batching('list', 1, 0)", "23514"),
    ("SELECT callback.set_batching('list', 1, 1001)", "23514"),
    ("SELECT callback.set_batching('list', 1, 10, max_bytes => 100)", "23514"),
    ("SELECT callback.set_batching('list', 1, 10, max_wait => '2 hours')", "23514"),
    ("SELECT callback.set_batching('queue', 1, 10)", "22023"),
    ("SELECT callback.set_batching('list', 999, 10)", "42704"),
])
def test_bad_batching_is_refused_and_nothing_written(db, receiver, call, sqlstate):
    make_list(db, receiver.url("/x"))
    with pytest.raises(psycopg.Error) as refused:
        db.sql(call)
    assert refused.value.sqlstate == sqlstate
    assert db.one("SELECT count(*) FROM callback.batching") == 0


def test_a_tenant_batches_its_own_targets_only(db, receiver, cluster):
    cluster.sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'acme_crm') THEN "
                "CREATE ROLE acme_crm; END IF; END $$", dbname="postgres")
    secret = db.one("SELECT callback.generate_signing_secret()")
    make_list(db, receiver.url("/tenant"), signing_secret=secret)
    db.sql("INSERT INTO callback.accounts (name) VALUES ('globex')")
    db.sql("INSERT INTO callback.lists (account_id, name, callback_url) VALUES (2, 'theirs', %s)", [receiver.url("/globex")])
    db.sql("SELECT callback.grant_account(1, 'acme_crm')")
    with db.connect() as conn:
        conn.execute("SET ROLE acme_crm")
        conn.execute("SELECT callback.set_batching('list', 1, 2, max_wait => '100 milliseconds')")
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SELECT callback.set_batching('list', 2, 2)")
        conn.execute(SEND, [2])
        receiver.wait_for(1, "/tenant")
        db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="the batch delivered")
        assert conn.execute("SELECT count(*) FROM callback.history WHERE batch_size = 2").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM callback.batch_events").fetchone()[0] == 2
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT signing_secret FROM callback.batch_events")
    assert db.sql("SELECT account_id, target_id FROM callback.batching") == [(1, 1)]
