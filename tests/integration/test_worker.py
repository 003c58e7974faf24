"""The worker's life: woken by commits, idle with no queries and no connection, named in
pg_stat_activity, holding no lock or transaction while HTTP is in flight, reloading settings on
SIGHUP, stopping promptly on SIGTERM, surviving SIGKILL with nothing lost, and never standing
in the way of DROP EXTENSION or DROP DATABASE."""

import contextlib
import os
import signal
import time

import psycopg
import pytest

from conftest import DATABASE, Behaviour, Receiver
from helpers import make_list, send_message

WORKERS = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_callback worker'"


def wait_until_idle(db, timeout=10):
    db.wait_for(f"SELECT ({WORKERS}) = 0", timeout=timeout, what="the workers to exit when idle")


def in_flight_worker(db):
    """The pid of the worker sending a request right now."""
    return db.wait_for("""SELECT leased_by FROM callback.callbacks WHERE leased_until IS NOT NULL""",
                       what="a leased callback")


def test_idle_workers_exit_and_a_commit_brings_them_back(db, receiver):
    make_list(db, receiver.url("/dlr"))
    send_message(db)
    receiver.wait_for(1)
    wait_until_idle(db)
    # Idle: only the launcher remains, connected to no database, and it runs no queries.
    [(launchers, database)] = db.sql(
        "SELECT count(*), max(datname) FROM pg_stat_activity WHERE backend_type = 'pg_callback launcher'")
    assert (launchers, database) == (1, None)
    # A commit wakes it: a worker starts and delivers.
    send_message(db, destination="+15550002")
    [_, second] = receiver.wait_for(2)
    assert second.json()["data"]["destination"] == "+15550002"


def test_no_lock_or_transaction_is_held_while_http_is_in_flight(db, receiver):
    make_list(db, receiver.url("/slow"))
    receiver.respond("/slow", Behaviour(delay=3))
    send_message(db)
    receiver.wait_for(1, "/slow")
    pid = in_flight_worker(db)
    # The request may reach the receiver before the worker has finished the turn that sent it
    # (its other work after sending); once it has, it waits for the answer holding nothing,
    # for as long as the answer takes.
    sending = ("SELECT state = 'idle' AND query = 'sending callbacks (1 in flight)' AND xact_start IS NULL "
               "FROM pg_stat_activity WHERE pid = %s")
    db.wait_for(sending, [pid], timeout=1, what="the worker waiting, no transaction open")
    for _ in range(10):
        [(state, activity, xact_start, name, datname)] = db.sql(
            "SELECT state, query, xact_start, application_name, datname FROM pg_stat_activity WHERE pid = %s", [pid])
        assert (state, activity, xact_start) == ("idle", "sending callbacks (1 in flight)", None), "no open transaction"
        assert name.startswith("pg_callback worker") and datname == DATABASE
        assert db.one("SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype <> 'virtualxid'", [pid]) == 0
        time.sleep(0.1)
    assert db.one("SELECT state FROM callback.callbacks") == "pending", "still waiting for the answer"
    # Its queue row can be locked by anyone meanwhile.
    with db.connect(autocommit=False) as conn:
        conn.execute("SELECT id FROM callback.callbacks_undone FOR UPDATE NOWAIT")
        conn.rollback()
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks")


MESSAGES = """INSERT INTO callback.messages (campaign_id, channel, destination, status)
              SELECT %s, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, %s) g"""


@contextlib.contextmanager
def slow_and_fast_campaigns(db, fast, delay):
    """Campaign 1 calls back a receiver of its own at /slow, which answers after `delay`
    seconds (yielded, and closed after); campaign 2 calls back receiver `fast` at /fast."""
    slow = Receiver()
    try:
        slow.respond("/slow", Behaviour(delay=delay))
        make_list(db, slow.url("/slow"))
        db.sql("INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'fast', %s)",
               [fast.url("/fast")])
        db.sql("INSERT INTO callback.campaigns (list_id, name) VALUES (2, 'fast')")
        yield slow
    finally:
        slow.close()


def send_messages(db, campaign, count):
    """`count` delivered messages of `campaign` in one transaction."""
    db.sql(MESSAGES, [campaign, count])


def test_a_slow_endpoint_does_not_hold_up_the_others(db, receiver):
    """40 callbacks to an endpoint that takes 3 s to answer, then 20 to another host. Each of
    the 2 workers sends at most pg_callback.max_in_flight_per_host (16) to one host, of its 64
    threads; the 20 arrive before the slow endpoint has answered anything."""
    with slow_and_fast_campaigns(db, receiver, delay=3) as slow:
        send_messages(db, 1, 40)
        first_slow = slow.wait_for(1, "/slow")[0].at
        time.sleep(0.5)  # the workers take what they may of the slow host
        assert 1 <= len(slow.received("/slow")) <= 2 * 16
        send_messages(db, 2, 20)
        fast = receiver.wait_for(20, "/fast", timeout=2.0)
        assert max(r.at for r in fast) < first_slow + 3, "the fast host was served while the slow one was busy"


@pytest.mark.parametrize("recording", ["deferred", "immediate"])
def test_a_slow_endpoints_backlog_does_not_hold_up_the_others(db, receiver, recording):
    """3,000 callbacks to an endpoint that takes 2 s to answer: more than the workers' batches
    (200 each), so each worker's first claim brings more of them than it has threads (64), and
    than it may send in 20 s (16 at a time). Callbacks to another host recorded after them
    still go at once: rendered by a worker (deferred recording), or already in the queue behind
    the 2,600 others of the slow endpoint (immediate), more than a claim reads (4 batches)."""
    with slow_and_fast_campaigns(db, receiver, delay=2) as slow:
        send_messages(db, 1, 3000)
        first_slow = slow.wait_for(1, "/slow")[0].at
        db.wait_for("SELECT count(*) >= 2 * 200 FROM callback.callbacks_undone WHERE leased_until IS NOT NULL",
                    what="the workers holding a batch each of the slow endpoint's callbacks")
        with db.connect() as app:
            app.execute(f"SET pg_callback.recording = {recording}")
            app.execute(MESSAGES, [2, 20])
        fast = receiver.wait_for(20, "/fast", timeout=1.5)
        assert max(r.at for r in fast) < first_slow + 2, "the fast host was served before the slow one answered"
        assert len(slow.received("/slow")) <= 2 * 16, "the slow host never had more than its slots"


def test_settings_reload_on_sighup(db, receiver, cluster):
    make_list(db, receiver.url("/dlr"))
    receiver.respond("/dlr", Behaviour(body=b"accepted"))
    send_message(db)
    db.wait_for("SELECT count(*) = 1 FROM callback.deliveries")
    try:
        db.sql("ALTER SYSTEM SET pg_callback.response_excerpt = 3")
        db.sql("SELECT pg_reload_conf()")
        time.sleep(0.2)
        send_message(db, destination="+15550002")
        db.wait_for("SELECT count(*) = 2 FROM callback.deliveries")
        assert [r[0] for r in db.sql("SELECT response_excerpt FROM callback.deliveries ORDER BY id")] == ["accepted", "acc"]
    finally:
        db.sql("ALTER SYSTEM RESET pg_callback.response_excerpt")
        db.sql("SELECT pg_reload_conf()")


def test_sigterm_stops_a_worker_promptly_and_its_callback_is_sent_again(db, receiver):
    make_list(db, receiver.url("/slow"))
    receiver.respond("/slow", Behaviour(delay=5), Behaviour(status=200))
    send_message(db)
    receiver.wait_for(1, "/slow")
    pid = in_flight_worker(db)
    stopped_at = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    db.wait_for("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s", [pid], timeout=3)
    assert time.monotonic() - stopped_at < 2, "stopped without waiting for the 5 s request"
    # Released, not lost: another worker sends it again (a duplicate the receiver may see).
    receiver.wait_for(2, "/slow", timeout=10)
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", timeout=10)


def test_sigkill_mid_batch_loses_nothing(db, receiver, cluster):
    make_list(db, receiver.url("/slow"))
    receiver.respond("/slow", Behaviour(delay=3), Behaviour(status=200))
    messages = [send_message(db, destination=f"+1555000{i}") for i in range(5)]
    receiver.wait_for(1, "/slow")
    pid = in_flight_worker(db)
    os.kill(pid, signal.SIGKILL)
    # The postmaster restarts every process after a crash; wait until it accepts connections.
    deadline = time.monotonic() + 30
    while True:
        try:
            if db.one("SELECT count(*) FROM callback.callbacks WHERE state = 'delivered'") == len(messages):
                break
        except psycopg.OperationalError:
            pass
        assert time.monotonic() < deadline, "callbacks not all delivered after the crash"
        time.sleep(0.2)
    delivered = {r.json()["data"]["message_id"] for r in receiver.received("/slow") if r.body}
    assert delivered == set(messages)


def test_drop_extension_is_not_blocked_by_a_request_in_flight(db, receiver):
    make_list(db, receiver.url("/slow"))
    receiver.respond("/slow", Behaviour(delay=4))
    send_message(db)
    receiver.wait_for(1, "/slow")
    in_flight_worker(db)
    started = time.monotonic()
    db.sql("DROP EXTENSION pg_callback CASCADE")
    assert time.monotonic() - started < 3
    # The worker finds the extension gone and exits; creating it again starts over cleanly.
    wait_until_idle(db)
    db.sql("CREATE EXTENSION pg_callback")
    assert db.one("SELECT count(*) FROM callback.callbacks") == 0


def test_drop_database_is_not_blocked(cluster, receiver):
    cluster.sql("DROP EXTENSION IF EXISTS pg_callback CASCADE")
    cluster.sql("CREATE EXTENSION pg_callback")
    cluster.sql("INSERT INTO callback.accounts (name) VALUES ('acme')")
    make_list(cluster, receiver.url("/dlr"))
    send_message(cluster)
    receiver.wait_for(1)
    # A worker may still be lingering: DROP DATABASE waits up to 5 s for it to leave.
    cluster.sql(f"DROP DATABASE {DATABASE}", dbname="postgres")
    cluster.sql(f"CREATE DATABASE {DATABASE}", dbname="postgres")


def test_retention_deletes_old_delivered_callbacks_and_their_history(db, receiver):
    make_list(db, receiver.url("/dlr"))
    try:
        db.sql("ALTER SYSTEM SET pg_callback.retention = '1s'")
        db.sql("SELECT pg_reload_conf()")
        old = send_message(db)
        db.wait_for("SELECT count(*) = 1 FROM callback.deliveries")
        wait_until_idle(db)
        # A new worker purges when it starts working; the first callback is past retention.
        time.sleep(1.2)
        new = send_message(db, destination="+15550002")
        db.wait_for("SELECT count(*) = 0 FROM callback.callbacks WHERE message_id = %s", [old],
                    what="the old callback purged")
        assert db.one("SELECT count(*) FROM callback.history WHERE message_id = %s", [old]) == 0
        # The new one is delivered and, still within retention, kept with its history.
        db.wait_for("SELECT state = 'delivered' FROM callback.callbacks WHERE message_id = %s", [new])
        assert db.one("SELECT count(*) FROM callback.history WHERE message_id = %s", [new]) == 1
    finally:
        db.sql("ALTER SYSTEM RESET pg_callback.retention")
        db.sql("SELECT pg_reload_conf()")


def test_the_workers_view_shows_what_each_worker_did(db, receiver):
    make_list(db, receiver.url("/dlr"))
    receiver.respond("/dlr", Behaviour(status=500), Behaviour(status=200))
    totals = "SELECT coalesce(sum(delivered), 0), coalesce(sum(retried), 0) FROM callback.workers"
    [(delivered, retried)] = db.sql(totals)
    db.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status)
              SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, 5) g""")
    db.wait_for("SELECT count(*) = 5 FROM callback.callbacks WHERE state = 'delivered'", what="five delivered")
    # Counted since the server started, so by difference.
    db.wait_for(f"SELECT ({totals.replace(', coalesce(sum(retried), 0)', '')}) - %s = 5", [delivered],
                what="five more delivered in callback.workers")
    assert db.one("SELECT sum(retried) FROM callback.workers") - retried == 1
    recent = db.sql("""SELECT pid FROM callback.workers
                       WHERE pid > 0 AND last_claim_at > now() - interval '1 minute' AND last_claim_size > 0""")
    assert recent, "no worker claimed a batch in the last minute"
