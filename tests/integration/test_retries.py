"""Retry policies, Retry-After, 410, timeouts, dropped connections, event order, and what
final failure leads to: the callback kept and replayable, the campaign's callbacks disabled
(held, not dropped), the alert recorded, NOTIFY sent and the alert URL called.
Schedules run compressed (pg_callback.time_scale = 0.001)."""

import threading
import time

from conftest import Behaviour
from helpers import make_list, send_message


def test_strict_policy_three_attempts_then_campaign_disabled_and_alerted(db, receiver):
    make_list(db, receiver.url("/dlr"), retry_policy="strict", alert_url=receiver.url("/alert"),
              notification_list="{ops@example.com}")
    receiver.respond("/dlr", Behaviour(status=500))
    with db.connect() as listener:
        listener.execute("LISTEN pg_callback_alerts")
        message = send_message(db)
        attempts = receiver.wait_for(3, "/dlr")
        db.wait_for("SELECT state = 'failed' FROM callback.callbacks WHERE message_id = %s", [message])
        notices = list(listener.notifies(timeout=5, stop_after=1))
    # Three attempts about 5 minutes apart, compressed 1000 times: about 0.3 s.
    gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:])]
    assert all(0.25 < gap < 3 for gap in gaps), gaps
    time.sleep(0.5)
    assert len(receiver.received("/dlr")) == 3, "no fourth attempt"
    assert db.one("SELECT callbacks_enabled FROM callback.campaigns WHERE id = 1") is False
    [(reason, people)] = db.sql("SELECT reason, notification_list FROM callback.alerts")
    assert "failed after 3 attempts" in reason and people == ["ops@example.com"]
    assert notices and '"campaign_id" : 1' in notices[0].payload
    [alert] = receiver.wait_for(1, "/alert")
    body = alert.json()
    assert body["type"] == "campaign.callbacks_disabled"
    assert body["data"]["campaign_id"] == 1 and body["data"]["attempts"] == 3

    # While disabled, new callbacks are held, not sent and not dropped.
    receiver.respond("/dlr", Behaviour(status=200))
    later = send_message(db, destination="+15550002")
    time.sleep(0.5)
    assert db.one("SELECT state::text FROM callback.callbacks WHERE message_id = %s", [later]) == "held"
    assert len(receiver.received("/dlr")) == 3

    # Enabling releases them; the failed one is replayed by hand.
    db.sql("SELECT callback.enable_campaign_callbacks(1)")
    receiver.wait_for(4, "/dlr")
    db.sql("SELECT callback.replay(id) FROM callback.callbacks WHERE message_id = %s", [message])
    receiver.wait_for(5, "/dlr")
    db.wait_for("SELECT bool_and(state = 'delivered') FROM callback.callbacks WHERE message_id IN (%s, %s)", [message, later])


def test_exactly_200_is_required_by_the_strict_policy(db, receiver):
    make_list(db, receiver.url("/dlr"), retry_policy="strict")
    receiver.respond("/dlr", Behaviour(status=204), Behaviour(status=200))
    send_message(db)
    receiver.wait_for(2, "/dlr")
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks")
    assert db.sql("SELECT http_status FROM callback.history ORDER BY id") == [(204,), (200,)]


def test_explicit_intervals_and_exponential_policies(db, receiver):
    db.sql("""INSERT INTO callback.retry_policies (name, kind, max_attempts, intervals)
              VALUES ('custom', 'intervals', 3, '{1 second, 10 minutes}')""")
    make_list(db, receiver.url("/dlr"), retry_policy="custom")
    receiver.respond("/dlr", Behaviour(status=500))
    send_message(db)
    attempts = receiver.wait_for(3, "/dlr")
    db.wait_for("SELECT state = 'failed' FROM callback.callbacks")
    # 1 s and 10 min, compressed: 1 ms then 0.6 s.
    assert attempts[2].at - attempts[1].at > 0.5
    assert db.one("SELECT callbacks_enabled FROM callback.campaigns") is True, "only strict disables"


def test_retry_after_is_honoured_and_410_stops(db, receiver):
    make_list(db, receiver.url("/busy"))
    receiver.respond("/busy", Behaviour(status=429, headers={"Retry-After": "3600"}))
    send_message(db)
    receiver.wait_for(1, "/busy")
    due_in = db.wait_for("""SELECT extract(epoch FROM due_at - now()) FROM callback.callbacks
                            WHERE attempts = 1 AND leased_until IS NULL""")
    # Due an hour after the worker's write, which may have started a moment after this
    # query's now() (taken before its snapshot): 3600.000214 s was seen.
    assert 3500 < due_in < 3601, "Retry-After is not compressed"

    db.sql("UPDATE callback.lists SET callback_url = %s", [receiver.url("/gone")])
    receiver.respond("/gone", Behaviour(status=410))
    message = send_message(db, destination="+15550002")
    receiver.wait_for(1, "/gone")
    db.wait_for("SELECT state = 'failed' FROM callback.callbacks WHERE message_id = %s", [message])
    time.sleep(0.3)
    assert len(receiver.received("/gone")) == 1


def test_a_url_that_cannot_be_sent_fails_at_once_saying_why(db, receiver):
    # Such a URL is refused when written; one recorded before that check (here, put in place
    # by hand while the campaign's callbacks are held) fails on its first attempt.
    make_list(db, receiver.url("/dlr"))
    db.sql("SELECT callback.disable_campaign_callbacks(1)")
    send_message(db)
    db.wait_for("SELECT state = 'held' FROM callback.callbacks", what="the callback held")
    db.sql("UPDATE callback.requests SET url = 'http:///dlr'")
    db.sql("SELECT callback.enable_campaign_callbacks(1)")
    db.wait_for("SELECT state = 'failed' FROM callback.callbacks", what="failed at once")
    [(attempts, error)] = db.sql("SELECT c.attempts, d.error FROM callback.callbacks c "
                                 "JOIN callback.deliveries d ON d.callback_id = c.id")
    assert attempts == 1 and error.startswith("the URL cannot be sent"), (attempts, error)


def test_timeouts_and_dropped_connections_are_recorded_and_retried(db, receiver):
    db.sql("INSERT INTO callback.retry_policies (name, kind, max_attempts, step, timeout) VALUES ('quick', 'fixed', 3, '1 second', '1 second')")
    make_list(db, receiver.url("/slow"), retry_policy="quick")
    receiver.respond("/slow", Behaviour(delay=2.5), Behaviour(drop=True), Behaviour(status=200))
    message = send_message(db)
    receiver.wait_for(3, "/slow", timeout=15)
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", timeout=15)
    history = db.sql("SELECT attempt, http_status, error, duration FROM callback.message_history(%s)", [message])
    assert [h[0] for h in history] == [1, 2, 3]
    assert history[0][1] is None and history[0][2].startswith("timeout")
    assert history[1][1] is None and history[1][2]
    assert history[2][1] == 200 and history[2][2] is None


def test_callbacks_for_one_message_and_target_arrive_in_event_order(db, receiver):
    make_list(db, receiver.url("/dlr"))
    receiver.respond("/dlr", Behaviour(status=503), Behaviour(status=200))
    message = send_message(db, status="queued", intermediate_reports=True)
    for status in ["accepted", "sent", "delivered", "read"]:
        db.sql("UPDATE callback.messages SET status = %s WHERE id = %s", [status, message])
    requests = receiver.wait_for(6, "/dlr")
    db.wait_for("SELECT bool_and(state = 'delivered') FROM callback.callbacks")
    order = [r.json()["data"]["status"] for r in requests if r.json()["type"] == "message.status"]
    # The first attempt at "queued" failed and was retried before anything later was sent.
    assert order == ["queued", "queued", "accepted", "sent", "delivered", "read"]


def test_events_recorded_by_many_sessions_arrive_in_order_per_message(db, receiver):
    """Deferred recording: events of four sessions at once, rendered after commit by the two
    workers (one at a time), reach each message's URL in the order they happened, and the
    events table is left empty."""
    make_list(db, receiver.url("/dlr/${id}"))
    messages = [send_message(db, status="queued", intermediate_reports=True) for _ in range(40)]
    statuses = ["accepted", "sent", "delivered", "read"]

    def change(part):
        with db.connect() as conn:
            conn.execute("SET pg_callback.recording = deferred")
            for status in statuses:
                for m in messages[part::4]:
                    conn.execute("UPDATE callback.messages SET status = %s WHERE id = %s", [status, m])

    sessions = [threading.Thread(target=change, args=(p,)) for p in range(4)]
    for s in sessions:
        s.start()
    for s in sessions:
        s.join()
    requests = receiver.wait_for(40 * 5, timeout=30)
    for m in messages:
        order = [r.json()["data"]["status"] for r in requests if r.path == f"/dlr/{m}"]
        assert order == ["queued", *statuses], f"message {m}"
    assert db.one("SELECT count(*) FROM callback.events") == 0


def test_a_retry_due_after_the_workers_left_is_started_by_the_launchers_timer(db, receiver):
    # 30 minutes compressed is 1.8 s, longer than the workers' 1 s idle_exit.
    db.sql("""INSERT INTO callback.retry_policies (name, kind, max_attempts, intervals)
              VALUES ('later', 'intervals', 2, '{30 minutes}')""")
    make_list(db, receiver.url("/dlr"), retry_policy="later")
    receiver.respond("/dlr", Behaviour(status=500), Behaviour(status=200))
    send_message(db)
    [first] = receiver.wait_for(1, "/dlr")
    db.wait_for("SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_callback worker'",
                what="the workers to leave")
    [_, second] = receiver.wait_for(2, "/dlr")
    assert 1.7 < second.at - first.at < 5
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks")
