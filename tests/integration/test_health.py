"""Endpoint health: after pg_callback.endpoint_down_after failures in a row an endpoint is down;
its callbacks wait instead of spending their attempts, one probe at a time tests it on an
interval that doubles, and when it answers they all go. The view shows it; an administrator
can reset it; under the strict policy, probes count toward the campaign being disabled.

Probe intervals are times pg_callback.time_scale (0.001 here): 500 s is 0.5 s."""

import time

import psycopg
import pytest

from conftest import Behaviour, Receiver
from helpers import make_list

@pytest.fixture
def health(settings):
    """Endpoints go down after 3 failures; probes 0.5 s, 1 s, then every 2 s. Reset after;
    returns the settings fixture, to change more."""
    settings(endpoint_down_after=3, endpoint_probe_interval="500s", endpoint_probe_max="2000s")
    return settings


def messages(db, n):
    """n delivered messages of campaign 1, one statement."""
    db.sql("INSERT INTO callback.messages (campaign_id, channel, destination, status) "
           "SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, %s) g", [n])


def state(db, endpoint):
    return db.one("SELECT state FROM callback.endpoints WHERE endpoint = %s", [endpoint])


def test_a_down_endpoint_is_probed_one_request_at_a_time_then_its_callbacks_flow(db, receiver, health):
    other = Receiver()
    try:
        receiver.respond_all(Behaviour(status=503))
        make_list(db, receiver.url("/dlr/${id}"))
        db.sql("INSERT INTO callback.subscriptions (account_id, name, callback_url, events) "
               "VALUES (1, 'copies', %s, '{message.status}')", [other.url("/copy")])
        endpoint = receiver.url("").rstrip("/")
        messages(db, 30)
        db.wait_for("SELECT state = 'down' FROM callback.endpoints WHERE endpoint = %s", [endpoint],
                    what="the endpoint down")
        # The other endpoint's callbacks flow meanwhile.
        other.wait_for(30)
        went_down = time.time()
        time.sleep(4.5)
        row = db.sql("SELECT state, state_since, last_error, next_probe_at FROM callback.endpoint_health "
                     "WHERE endpoint = %s", [endpoint])[0]
        assert row[0] == "down" and row[1] is not None and row[3] is not None
        assert row[2] == "HTTP 503 is not a success"
        # Requests since it went down: probes only, one at a time, further and further apart.
        probes = [r.at for r in receiver.received() if r.at > went_down + 0.05]
        gaps = [b - a for a, b in zip(probes, probes[1:])]
        seen = [(round(r.at - went_down, 4), r.path) for r in receiver.received()]
        assert 2 <= len(probes) <= 5, seen
        assert all(gap > 0.4 for gap in gaps), (gaps, seen)
        assert gaps == sorted(gaps) or max(gaps) >= 1.8, gaps
        # The 30 callbacks did not each spend their attempts.
        attempts = db.one("SELECT sum(attempts) FROM callback.callbacks WHERE target <> 'subscription'")
        assert attempts <= 30 + len(probes) + 3 * 2, attempts

        receiver.respond_all(Behaviour(status=200))
        db.wait_for("SELECT count(*) = 60 FROM callback.callbacks WHERE state = 'delivered'",
                    timeout=15, what="every callback delivered once it answers")
        assert state(db, endpoint) == "up"
        assert db.one("SELECT failures FROM callback.endpoints WHERE endpoint = %s", [endpoint]) == 0
    finally:
        other.close()


def test_what_a_worker_holds_for_an_endpoint_that_goes_down_waits_for_its_probe(db, receiver, health):
    """A worker holding many callbacks of one endpoint, sending them one at a time, stops once
    its own results take the endpoint down: the rest are given back to wait for the probe
    (an hour away here), not sent after it."""
    health(max_in_flight_per_host=1, endpoint_probe_interval="1000h", endpoint_probe_max="1000h")
    receiver.respond_all(Behaviour(status=503, delay=0.1))
    make_list(db, receiver.url("/dlr/${id}"))
    endpoint = receiver.url("").rstrip("/")
    messages(db, 30)
    db.wait_for("SELECT state = 'down' FROM callback.endpoints WHERE endpoint = %s", [endpoint],
                what="the endpoint down")
    time.sleep(2)
    # Three failures took it down; the request on the wire then, and one a write's wait later,
    # at most. Sent one at a time, every callback held would have taken 3 s.
    sent = len(receiver.received())
    assert 3 <= sent <= 6, sent
    assert db.one("SELECT count(*) FROM callback.callbacks WHERE state = 'pending' AND leased_by IS NULL") == 30


def test_an_administrator_resets_an_endpoint_and_its_callbacks_go_at_once(db, receiver, health):
    health(endpoint_probe_interval="1000h")
    receiver.down()
    make_list(db, receiver.url("/dlr/${id}"))
    endpoint = receiver.url("").rstrip("/")
    messages(db, 10)
    db.wait_for("SELECT state = 'down' FROM callback.endpoints WHERE endpoint = %s", [endpoint],
                what="the endpoint down")
    assert db.one("SELECT last_error FROM callback.endpoint_health WHERE endpoint = %s", [endpoint]) \
        .startswith("connection error")
    receiver.up()
    time.sleep(0.5)
    # Its next probe is an hour away: nothing is sent until the reset.
    assert receiver.received() == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with db.connect() as conn:
            conn.execute("SET ROLE callback_tenant")
            conn.execute("SELECT callback.reset_endpoint(%s)", [endpoint])
    assert db.one("SELECT callback.reset_endpoint(%s)", [endpoint]) is True
    db.wait_for("SELECT count(*) = 10 FROM callback.callbacks WHERE state = 'delivered'",
                what="delivered after the reset")
    assert state(db, endpoint) == "up"
    assert db.one("SELECT callback.reset_endpoint('https://unknown.example')") is False


def test_probes_count_toward_disabling_a_strict_campaign(db, receiver, health):
    """Seed 001: strict callbacks that fail three attempts, probes included, disable the
    campaign's callbacks and alert its notification list."""
    receiver.respond_all(Behaviour(status=500))
    make_list(db, receiver.url("/dlr/${id}"), retry_policy="strict", notification_list=["ops@acme.example"])
    endpoint = receiver.url("").rstrip("/")
    messages(db, 5)
    db.wait_for("SELECT NOT callbacks_enabled FROM callback.campaigns WHERE id = 1", timeout=15,
                what="the campaign's callbacks disabled")
    assert state(db, endpoint) == "down"
    failed = db.sql("SELECT id, attempts FROM callback.callbacks WHERE state = 'failed'")
    assert failed and all(attempts == 3 for _, attempts in failed)
    # The failed callback's third attempt was a probe: sent while the endpoint was down.
    since = db.one("SELECT since FROM callback.endpoints WHERE endpoint = %s", [endpoint])
    assert db.one("SELECT count(*) FROM callback.deliveries d WHERE d.callback_id = ANY(%s) AND d.started_at > %s",
                  [[i for i, _ in failed], since]) >= 1
    assert db.one("SELECT count(*) FROM callback.alerts WHERE campaign_id = 1") == 1
