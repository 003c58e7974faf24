"""The fault suite (RELIABILITY.md): each test records N events (PG_CALLBACK_FAULT_EVENTS, 300 by
default), injects one fault while they are being delivered, and checks that every event's
callback reached the receiver at least once, and that every duplicate came with the webhook-id
of its first copy (receivers drop such as retries); duplicates are counted and, but for
crashes (which may undo the workers' last commits), bounded by what was claimed when the
fault struck. A duplicate is an event the receiver accepted (answered 2xx) twice. The tally
of every test is printed at the end of the run.

URLs carry the message id (/f/<id>), so the receiver's log says which events arrived. Run alone:
python3 -m pytest -q -s tests/integration/test_faults.py (after tests/run.sh has installed it)."""

import contextlib
import os
import pathlib
import signal
import time
import urllib.request
from collections import Counter

import psycopg
import pytest

from conftest import Behaviour, ObjectStorage, SmtpRelay, tls_receiver
from helpers import make_list

N = int(os.environ.get("PG_CALLBACK_FAULT_EVENTS", "300"))
SETTLE = 60.0

# One row per test: (fault, events, received, lost, duplicates, duplicates under another
# webhook-id, in flight when it struck).
TALLY = []


def record_events(db, receiver, n=N, path="/f", url=None, **list_settings):
    """n delivered messages of campaign 1 in one statement: n callbacks to the receiver's
    path/<id> (or to url); returns their ids."""
    make_list(db, url or receiver.url(path + "/${id}"), **list_settings)
    rows = db.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status)
                     SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, %s) g RETURNING id""", [n])
    return [r[0] for r in rows]


def query(db, sql, params=None):
    """db.one, retried while the server restarts after a crash."""
    deadline = time.monotonic() + SETTLE
    while True:
        try:
            return db.one(sql, params)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def settle(db, ids, state="delivered"):
    """Waits until every callback of these messages is in `state`."""
    deadline = time.monotonic() + SETTLE
    while query(db, "SELECT count(*) FROM callback.callbacks WHERE message_id = ANY(%s) AND state = %s",
                [ids, state]) < len(ids):
        assert time.monotonic() < deadline, f"callbacks not all {state} after {SETTLE} s: " + repr(db.sql(
            "SELECT state, count(*), min(due_at) - now(), bool_or(leased_until IS NOT NULL) FROM callback.callbacks "
            "GROUP BY 1")) + repr(db.sql("SELECT * FROM callback.endpoints")) + repr(db.sql("SELECT * FROM callback.workers"))
        time.sleep(0.2)


def tally(fault, ids, receiver, in_flight=0, duplicates_at_most=None, path="/f"):
    """Counts what the receiver got for these messages at path/<id>: every request, and those it
    accepted (answered 2xx). No event may be lost; a duplicate is an event accepted twice."""
    mine = [r for r in receiver.received() if r.path.startswith(path + "/")]
    got = Counter(int(r.path.rsplit("/", 1)[1]) for r in mine)
    accepted = [r for r in mine if r.answer and 200 <= r.answer < 300]
    accepted_ids = {}
    for r in accepted:
        accepted_ids.setdefault(int(r.path.rsplit("/", 1)[1]), []).append(r.headers["webhook-id"])
    lost = sorted(set(ids) - set(got))
    duplicates = sum(len(accepted_ids.get(i, [])) - 1 for i in ids if len(accepted_ids.get(i, [])) > 1)
    unrecognised = sum(len(set(accepted_ids.get(i, []))) - 1 for i in ids if accepted_ids.get(i))
    TALLY.append((fault, len(ids), sum(got[i] for i in ids), len(lost), duplicates, unrecognised, in_flight))
    assert not lost, f"{len(lost)} events lost, e.g. {lost[:5]}"
    assert unrecognised == 0, f"{unrecognised} events accepted again under another webhook-id"
    if duplicates_at_most is not None:
        assert duplicates <= duplicates_at_most, f"{duplicates} duplicates, more than the {duplicates_at_most} explained"
    return duplicates


def leased(db):
    """Callbacks claimed by a worker right now: the most a crash can make the receiver see twice."""
    return query(db, "SELECT count(*) FROM callback.callbacks_undone WHERE leased_by IS NOT NULL")


def wait_for_some(receiver, count=20):
    receiver.wait_for(count, timeout=SETTLE)


def test_sigkill_of_a_worker_mid_batch_repeatedly(db, receiver):
    receiver.respond_all(Behaviour(delay=0.01))
    ids = record_events(db, receiver)
    in_flight = 0
    for round_ in range(3):
        wait_for_some(receiver, 20 + round_ * N // 5)
        pids = []
        while not pids:
            pids = query(db, "SELECT array_agg(pid) FROM pg_stat_activity WHERE backend_type = 'pg_callback worker'")
        in_flight += leased(db)
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.5)
    settle(db, ids)
    # The crash may undo the workers' last commits, results written included: duplicates are
    # not bounded by what was claimed, but each carries its first copy's webhook-id.
    tally("SIGKILL of a worker mid-batch, 3 times", ids, receiver, in_flight)


def test_immediate_shutdown_mid_batch_and_restart(db, receiver, cluster):
    receiver.respond_all(Behaviour(delay=0.01))
    ids = record_events(db, receiver)
    wait_for_some(receiver)
    in_flight = leased(db)
    cluster.stop("immediate")
    cluster.restart_after_crash()
    settle(db, ids)
    tally("immediate shutdown mid-batch, then start", ids, receiver, in_flight)


@contextlib.contextmanager
def wal_writer_stopped_then_killed(db):
    """While inside, the WAL writer is stopped (SIGSTOP): commits that wait for no disk stay
    in shared memory. At the end it is killed, a crash: the server restarts from the disk."""
    # An autovacuum's ANALYZE commits durably, and would take the workers' commits with it.
    db.sql("ALTER SYSTEM SET autovacuum = off")
    db.sql("SELECT pg_reload_conf()")
    walwriter = query(db, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'")
    os.kill(walwriter, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(walwriter, signal.SIGKILL)
        query(db, "ALTER SYSTEM RESET autovacuum")
        query(db, "SELECT pg_reload_conf()")


def test_a_crash_undoing_the_workers_last_commits(db, receiver):
    """The workers' commits wait for no disk: a crash may undo those of the moment before it,
    after their requests went out. Here the WAL writer is stopped (SIGSTOP) before the events
    are recorded, so that none of the workers' commits (rendering, claims, results) reaches the
    disk while every event is delivered once; then it is killed. The server restarts from what
    was on disk, the events' own commit: they are rendered and sent again, and each must come
    again under the webhook-id it came with first."""
    receiver.respond_all(Behaviour())
    with wal_writer_stopped_then_killed(db):
        ids = record_events(db, receiver)
        receiver.wait_for(len(ids), timeout=SETTLE)
        time.sleep(0.3)  # their results written, as far as the workers know
    settle(db, ids)
    duplicates = tally("crash undoing the workers' last commits (WAL writer stopped, then killed)", ids, receiver)
    assert duplicates > 0, "the crash undid none of the workers' commits: nothing was sent twice"


def test_receiver_down_then_back(db, receiver):
    receiver.respond_all(Behaviour(delay=0.01))
    ids = record_events(db, receiver)
    wait_for_some(receiver)
    in_flight = leased(db)
    receiver.down()
    time.sleep(1.5)
    refused = query(db, "SELECT count(*) FROM callback.deliveries WHERE error LIKE 'connection error%%'")
    receiver.up()
    settle(db, ids)
    assert refused > 0, "no attempt met the receiver down"
    # Requests cut while in flight had arrived (and were answered into a cut connection).
    tally("receiver down 1.5 s (open connections cut), then back", ids, receiver, in_flight, duplicates_at_most=in_flight)


def test_endpoint_down_longer_than_the_probe_interval(db, receiver):
    """The receiver refuses connections for 3 s: the endpoint goes down after 10 failures in a
    row, and while it is down only probes reach for it (every 30 ms, doubling: 30 s and 1 h at
    time_scale 0.001), not every callback's own retries; back, everything is delivered."""
    receiver.respond_all(Behaviour(delay=0.01))
    ids = record_events(db, receiver)
    wait_for_some(receiver)
    in_flight = leased(db)
    receiver.down()
    endpoint = receiver.url("").rstrip("/")
    deadline = time.monotonic() + SETTLE
    while query(db, "SELECT state FROM callback.endpoints WHERE endpoint = %s", [endpoint]) != "down":
        assert time.monotonic() < deadline, "the endpoint never went down"
        time.sleep(0.05)
    time.sleep(3)
    # Attempts that started once it was down (and whatever was on the wire then had ended).
    tried_while_down = query(db, "SELECT count(*) FROM callback.deliveries d, callback.endpoints e "
                                 "WHERE e.endpoint = %s AND d.started_at > e.since + interval '0.2 s'", [endpoint])
    receiver.up()
    settle(db, ids)
    assert 2 <= tried_while_down <= 12, f"{tried_while_down} attempts while down: not one probe at a time"
    assert query(db, "SELECT state FROM callback.endpoints WHERE endpoint = %s", [endpoint]) == "up"
    tally("endpoint down 3 s, longer than the probe interval (probed, then back)", ids, receiver, in_flight,
          duplicates_at_most=in_flight)


def test_receiver_slower_than_the_timeout(db, receiver):
    db.sql("""INSERT INTO callback.retry_policies (name, kind, max_attempts, step, timeout)
              VALUES ('impatient', 'fixed', 5, '1 second', '1 second')""")
    n = N // 6
    for i in range(1, n + 1):
        receiver.respond(f"/f/{i}", Behaviour(delay=1.5), Behaviour())
    ids = record_events(db, receiver, n, retry_policy="impatient")
    settle(db, ids)
    timeouts = query(db, "SELECT count(*) FROM callback.deliveries WHERE error LIKE 'timeout%%'")
    assert timeouts >= n
    # Each first attempt was accepted, but after the worker gave up waiting: sent again, accepted twice.
    tally("receiver slower than the timeout (1.5 s > 1 s)", ids, receiver, duplicates_at_most=n)


def test_connections_reset(db, receiver):
    receiver.respond_all(Behaviour(drop=True), Behaviour())
    ids = record_events(db, receiver)
    settle(db, ids)
    tally("connection reset at each event's first attempt", ids, receiver, duplicates_at_most=0)


def test_500_then_429_with_retry_after_then_200(db, receiver):
    receiver.respond_all(Behaviour(status=500), Behaviour(status=429, headers={"Retry-After": "1"}), Behaviour())
    ids = record_events(db, receiver)
    settle(db, ids)
    # From each 429 to the attempt after it (an attempt that never reached the receiver, on a
    # connection it had closed, shifts the numbers).
    waited = query(db, """SELECT min(d2.started_at - d1.started_at) FROM callback.deliveries d1
                          JOIN callback.deliveries d2 ON d2.callback_id = d1.callback_id AND d2.attempt = d1.attempt + 1
                          WHERE d1.http_status = 429""")
    assert waited.total_seconds() >= 0.9, "Retry-After: 1 was not honoured"
    tally("500, then 429 with Retry-After: 1, then 200", ids, receiver, duplicates_at_most=0)


def test_410_gone_ends_the_callback(db, receiver):
    receiver.respond_all(Behaviour(status=410))
    ids = record_events(db, receiver)
    settle(db, ids, "failed")
    assert len(receiver.received()) == len(ids), "a 410 was retried"
    tally("410 Gone (failed at once, not retried)", ids, receiver, duplicates_at_most=0)


# A label of 64 characters, one more than DNS allows: the lookup fails at once, without asking
# a name server (the tests send nothing beyond loopback).
UNRESOLVABLE = "a" * 64 + ".invalid"


def wait_down(db, endpoint, error_like):
    """Waits until the endpoint is down, its last error like error_like, and what was on the wire
    then has landed; the attempts made by then."""
    deadline = time.monotonic() + SETTLE
    while query(db, "SELECT count(*) FROM callback.endpoints WHERE endpoint = %s AND state = 'down' "
                    "AND last_error LIKE %s", [endpoint, error_like]) == 0:
        assert time.monotonic() < deadline, "the endpoint never went down: " + repr(db.sql(
            "SELECT endpoint, state, failures, last_error FROM callback.endpoints"))
        time.sleep(0.1)
    time.sleep(0.5)
    return query(db, "SELECT count(*) FROM callback.deliveries")


def test_a_name_that_does_not_resolve(db, receiver):
    """Nothing can arrive: the endpoint is down after its first failures, with the error
    recorded, and every callback stays, waiting for its probes rather than spending its own
    attempts."""
    ids = record_events(db, receiver, url=f"http://{UNRESOLVABLE}/f/${{id}}")
    attempts = wait_down(db, f"http://{UNRESOLVABLE}", "host not found")
    time.sleep(1)
    attempts_since = query(db, "SELECT count(*) FROM callback.deliveries") - attempts
    kept = query(db, "SELECT count(*) FROM callback.callbacks WHERE message_id = ANY(%s) AND state = 'pending'", [ids])
    TALLY.append(("host name that does not resolve (kept, endpoint down, probed)", N, 0, N - kept, 0, 0, 0))
    assert kept == N
    assert attempts_since <= 10, f"{attempts_since} attempts in the second after it went down: not probes alone"


def test_an_untrusted_certificate_until_its_ca_is_trusted(db, ca, bundle):
    """HTTPS to a receiver whose CA the workers do not trust yet: attempts are refused and
    recorded until the endpoint is down, every callback kept; trusted, the next probe brings it
    up and they all arrive."""
    receiver = tls_receiver(ca, "127.0.0.1")
    try:
        ids = record_events(db, receiver)
        wait_down(db, receiver.url("").rstrip("/"), "TLS: %not trusted%")
        assert receiver.received() == []
        assert query(db, "SELECT count(*) FROM callback.callbacks WHERE message_id = ANY(%s) AND state = 'pending'",
                     [ids]) == N
        bundle()
        settle(db, ids)
        tally("HTTPS, certificate untrusted until its CA is added (endpoint down, then delivered)", ids, receiver,
              duplicates_at_most=0)
    finally:
        receiver.close()


def test_tls_handshakes_that_hang(db, ca, bundle):
    """The first connections hang before the handshake for longer than the timeout: those
    attempts time out and are retried; nothing was accepted, so nothing arrives twice."""
    bundle()
    db.sql("""INSERT INTO callback.retry_policies (name, kind, max_attempts, step, timeout)
              VALUES ('impatient', 'fixed', 10, '1 second', '1 second')""")
    receiver = tls_receiver(ca, "127.0.0.1")
    receiver.stall_handshakes, receiver.stall_seconds = 40, 1.5
    try:
        ids = record_events(db, receiver, retry_policy="impatient")
        settle(db, ids)
        timeouts = query(db, "SELECT count(*) FROM callback.deliveries WHERE error LIKE 'timeout%%'")
        assert timeouts > 0, "no attempt met a hanging handshake"
        tally("HTTPS, the first 40 handshakes hang 1.5 s (timeout 1 s)", ids, receiver, duplicates_at_most=0)
    finally:
        receiver.close()


def test_smtp_relay_down_then_back(db, receiver, settings):
    """The alert of a disabled campaign, emailed to 10 people while the relay refuses
    connections: every email is kept and retried (waits from 30 ms, doubling, at time_scale
    0.001); when the relay listens, each arrives once."""
    people = [f"person{i}@acme.example" for i in range(10)]
    relay = SmtpRelay()
    settings(smtp_host="127.0.0.1", smtp_port=relay.port, smtp_security="off", smtp_from="callbacks@platform.example")
    receiver.respond("/dlr", Behaviour(status=500))
    make_list(db, receiver.url("/dlr"), retry_policy="strict", notification_list=people)
    db.sql("INSERT INTO callback.messages (campaign_id, channel, destination, status) VALUES (1, 'sms', '+1', 'delivered')")
    deadline = time.monotonic() + SETTLE
    while query(db, "SELECT count(*) FROM callback.alert_emails WHERE attempts >= 2 AND state = 'pending'") < 10:
        assert time.monotonic() < deadline, "the emails were not retried"
        time.sleep(0.1)
    assert query(db, "SELECT bool_and(last_error LIKE 'SMTP: %%') FROM callback.alert_emails")
    relay.up()
    try:
        relay.wait_for(10, timeout=SETTLE)
        time.sleep(0.5)
        got = Counter(m["To"] for m in relay.messages)
        lost = [p for p in people if got[p] == 0]
        twice = sum(n - 1 for n in got.values() if n > 1)
        TALLY.append(("SMTP relay refusing connections, then back (10 alert emails)", 10, sum(got.values()),
                      len(lost), twice, 0, 0))
        assert not lost and twice == 0
        assert query(db, "SELECT count(*) FROM callback.alert_emails WHERE state = 'sent'") == 10
    finally:
        relay.down()


def report_campaign(db, receiver, messages=50):
    """Campaign 1 ended with `messages` messages; its list's URL takes campaign.complete."""
    make_list(db, receiver.url("/complete"), callback_events=["campaign.complete"])
    db.sql("INSERT INTO callback.messages (campaign_id, channel, destination, status) "
           "SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, %s) g", [messages])
    db.sql("UPDATE callback.campaigns SET status = 'completed' WHERE id = 1")


def report_arrived(db, receiver, fault):
    """The one campaign.complete carries a link that downloads the campaign's report."""
    completes = receiver.wait_for(1, "/complete", timeout=SETTLE)
    time.sleep(0.5)
    completes = receiver.received("/complete")
    link = completes[0].json()["data"]["report_url"]
    same = link is not None and urllib.request.urlopen(link).read().decode() == db.one(
        "SELECT callback.campaign_report_csv(1)")
    TALLY.append((fault, 1, len(completes), 0 if same else 1, len(completes) - 1, 0, 0))
    assert same, f"the report behind {link} is not the campaign's"
    assert len(completes) == 1


def test_object_storage_down_then_back(db, receiver, settings):
    """The storage refuses connections when the campaign ends: the upload is retried (waits
    from 30 ms, doubling) and campaign.complete waits; up, the report goes and then the event."""
    storage = ObjectStorage()
    settings(**storage.settings())
    report_campaign(db, receiver)
    deadline = time.monotonic() + SETTLE
    while query(db, "SELECT count(*) FROM callback.campaign_reports WHERE attempts >= 2 AND state = 'pending'") < 1:
        assert time.monotonic() < deadline, "the upload was not retried"
        time.sleep(0.1)
    assert receiver.received("/complete") == []
    assert query(db, "SELECT last_error LIKE 'storage: %%' FROM callback.campaign_reports")
    storage.up()
    try:
        report_arrived(db, receiver, "object storage refusing connections, then back (1 report)")
    finally:
        storage.down()


def test_crash_between_the_upload_and_campaign_complete(db, receiver, settings):
    """A worker is killed after the storage has the report and before the transaction that
    records campaign.complete commits (the storage holds its answer to the PUT): the report is
    uploaded again by the next worker, and campaign.complete goes once."""
    storage = ObjectStorage().up()
    storage.hold = 3.0
    try:
        settings(**storage.settings())
        report_campaign(db, receiver)
        deadline = time.monotonic() + SETTLE
        while not any(method == "PUT" for method, _, _ in storage.requests):
            assert time.monotonic() < deadline, "no upload"
            time.sleep(0.05)
        time.sleep(0.5)
        pids = query(db, "SELECT array_agg(pid) FROM pg_stat_activity WHERE backend_type = 'pg_callback worker'")
        for pid in pids or []:
            os.kill(pid, signal.SIGKILL)
        storage.hold = 0.0
        report_arrived(db, receiver, "SIGKILL between the report's upload and campaign.complete")
        assert sum(method == "PUT" for method, _, _ in storage.requests) >= 2
    finally:
        storage.down()


def batched(db, receiver):
    """A list batching 10 events to a request (max_wait 300 ms), the receiver answering after 50 ms."""
    receiver.respond_all(Behaviour(delay=0.05))
    make_list(db, receiver.url("/batched"))
    db.sql("SELECT callback.set_batching('list', 1, 10, max_wait => '300 milliseconds')")


def record_batched(db, n):
    return [r[0] for r in db.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status)
                                    SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, %s) g
                                    RETURNING id""", [n])]


def tally_batched(fault, db, ids, receiver, in_flight):
    """Counts each event from the batches' bodies; none may be lost, and an event seen twice
    must have come in the same batch sent again (a crash between its answer and the result's
    write, or one that undid the result), never in two batches."""
    deadline = time.monotonic() + SETTLE
    while query(db, "SELECT count(*) FROM callback.history WHERE state = 'delivered' AND http_status = 200") < len(ids):
        assert time.monotonic() < deadline, "batched events not all delivered"
        time.sleep(0.2)
    # A request cut short by the kill (its body not whole) is one no receiver would accept.
    requests = [r for r in receiver.received("/batched") if len(r.body) == int(r.headers["content-length"])]
    got = Counter(e["data"]["message_id"] for r in requests for e in r.json()["results"])
    accepted = Counter(e["data"]["message_id"] for r in requests if r.answer == 200 for e in r.json()["results"])
    lost = sorted(set(ids) - set(got))
    duplicates = sum(accepted[i] - 1 for i in ids if accepted[i] > 1)
    batches_of = {}
    for r in requests:
        for e in r.json()["results"]:
            batches_of.setdefault(e["data"]["message_id"], set()).add(r.headers["webhook-id"])
    in_two = sum(len(batches) - 1 for batches in batches_of.values())
    TALLY.append((fault, len(ids), sum(got[i] for i in ids), len(lost), duplicates, in_two, in_flight))
    assert not lost, f"{len(lost)} events lost, e.g. {lost[:5]}"
    assert in_two == 0, f"{in_two} events came in two batches"


def test_sigkill_with_batched_reports_in_flight_and_waiting(db, receiver):
    """Batched reports (events several to a request): workers killed while batches are on the
    wire and while events wait for their batch."""
    batched(db, receiver)
    ids, in_flight = [], 0
    for round_ in range(3):
        ids += record_batched(db, N // 3)
        wait_for_some(receiver, 3 + round_ * 10)
        pids = []
        while not pids:
            pids = query(db, "SELECT array_agg(pid) FROM pg_stat_activity WHERE backend_type = 'pg_callback worker'")
        in_flight += query(db, "SELECT coalesce(sum(batch_size), 0) FROM callback.callbacks WHERE leased_by IS NOT NULL")
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.5)
    tally_batched("SIGKILL of a worker with batched reports on the wire and waiting, 3 times", db, ids, receiver, in_flight)


def test_a_crash_undoing_the_workers_last_commits_with_batched_reports(db, receiver):
    """As test_a_crash_undoing_the_workers_last_commits, for batches: a batch is made durably
    (its webhook-id is random, and which events it takes depends on when), so what a crash
    undoes after it is its claims and results, and the batch goes again whole."""
    batched(db, receiver)
    with wal_writer_stopped_then_killed(db):
        ids = record_batched(db, N)
        deadline = time.monotonic() + SETTLE
        while sum(len(r.json()["results"]) for r in receiver.received("/batched")) < len(ids):
            assert time.monotonic() < deadline, "batched events not all sent"
            time.sleep(0.05)
        time.sleep(0.3)
    tally_batched("crash undoing the workers' last commits, batched reports", db, ids, receiver, 0)


def test_drop_extension_while_delivering(db, receiver):
    receiver.respond_all(Behaviour(delay=0.05))
    record_events(db, receiver)
    wait_for_some(receiver)
    started = time.monotonic()
    db.sql("DROP EXTENSION pg_callback CASCADE")
    assert time.monotonic() - started < 5, "DROP EXTENSION waited for the workers"
    # Its callbacks went with it; created again, it delivers new events as before (their ids
    # start again, so they go to another path).
    db.sql("CREATE EXTENSION pg_callback")
    db.sql("INSERT INTO callback.accounts (name) VALUES ('acme')")
    receiver.respond_all(Behaviour())
    ids = record_events(db, receiver, path="/again")
    settle(db, ids)
    tally("DROP EXTENSION while delivering, then CREATE (new events)", ids, receiver, duplicates_at_most=0, path="/again")


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    lines = ["| fault | events | requests received | lost | accepted twice | twice under another webhook-id | claimed when it struck |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {f} | {n} | {r} | {lost} | {d} | {u} | {c} |" for f, n, r, lost, d, u, c in TALLY]
    text = "\n".join(lines) + "\n"
    pathlib.Path(os.environ.get("PG_CALLBACK_FAULT_REPORT", "/tmp/pg_callback_faults.md")).write_text(text)
    print("\n" + text)
