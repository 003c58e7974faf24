"""Requests per second per endpoint: a burst to an endpoint an administrator limited arrives at
no more than the limit in any one-second window, while callbacks to another endpoint flow at
full speed; an account's own limit holds for its callbacks."""

import time

from conftest import Receiver
from helpers import make_list


def busiest_second(arrivals):
    """The most requests that arrived within any one second."""
    times = sorted(r.at for r in arrivals)
    most, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        most = max(most, i - j + 1)
    return most


def burst(db, n):
    time.sleep(1.1)  # a limit takes effect within a second (a worker reads them that often)
    db.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status)
              SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, %s) g""", [n])


def test_a_limited_endpoint_gets_no_more_than_its_limit_and_the_others_flow(db, receiver):
    other = Receiver()
    try:
        make_list(db, receiver.url("/limited/${id}"))
        db.sql("INSERT INTO callback.subscriptions (account_id, name, callback_url, events) "
               "VALUES (1, 'free', %s, '{message.status}')", [other.url("/free/${id}")])
        db.sql("INSERT INTO callback.endpoint_limits (endpoint, requests_per_second) VALUES (callback._endpoint(%s), 200)",
               [receiver.url("/")])
        burst(db, 1000)
        free = other.wait_for(1000, timeout=30)
        limited = receiver.wait_for(1000, timeout=30)
        assert busiest_second(limited) <= 200, busiest_second(limited)
        spans = [max(r.at for r in got) - min(r.at for r in got) for got in (free, limited)]
        assert spans[1] >= 4.5, f"1000 at 200/s took {spans[1]:.1f} s"
        assert spans[0] < spans[1] / 2, f"the free endpoint took {spans[0]:.1f} s beside {spans[1]:.1f} s"
        db.wait_for("SELECT bool_and(state = 'delivered') FROM callback.callbacks", timeout=30, what="all delivered")
    finally:
        other.close()


def test_an_account_limit_holds_for_its_callbacks(db, receiver):
    make_list(db, receiver.url("/mine/${id}"))
    db.sql("INSERT INTO callback.account_endpoint_limits (account_id, endpoint, requests_per_second) "
           "VALUES (1, callback._endpoint(%s), 50)", [receiver.url("/")])
    burst(db, 150)
    got = receiver.wait_for(150, timeout=30)
    assert busiest_second(got) <= 50, busiest_second(got)
    span = max(r.at for r in got) - min(r.at for r in got)
    assert span >= 2.5, f"150 at 50/s took {span:.1f} s"
