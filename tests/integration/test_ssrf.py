"""The SSRF guard: the workers refuse loopback, private, link-local and metadata addresses
unless pg_callback.allowed_destinations allows them (these tests' cluster allows 127.0.0.1, as
its receivers listen there). The refusal is the attempt's error in the history."""

import psycopg
from psycopg import sql
import pytest

from helpers import make_list, send_message

REFUSED = "destination refused: 127.0.0.1 is a loopback address (allow it in pg_callback.allowed_destinations)"


@pytest.fixture
def allow(cluster):
    """Sets pg_callback.allowed_destinations for the cluster (ALTER SYSTEM, reload); put back after."""

    def set_to(value):
        cluster.sql("ALTER SYSTEM SET pg_callback.allowed_destinations = %s" % sql.quote(value), dbname="postgres")
        cluster.sql("SELECT pg_reload_conf()", dbname="postgres")
        # A new session sees the value once the postmaster has reloaded and signalled the workers.
        cluster.wait_for("SELECT current_setting('pg_callback.allowed_destinations') = %s", [value])

    yield set_to
    cluster.sql("ALTER SYSTEM RESET pg_callback.allowed_destinations", dbname="postgres")
    cluster.sql("SELECT pg_reload_conf()", dbname="postgres")
    cluster.wait_for("SELECT current_setting('pg_callback.allowed_destinations') = '127.0.0.1'")


def test_loopback_is_refused_by_default_and_sent_once_allowed(db, receiver, allow):
    allow("")
    make_list(db, receiver.url("/dlr/${id}"))
    message = send_message(db)
    error = db.wait_for("SELECT error FROM callback.message_history(%s) ORDER BY attempt LIMIT 1", [message],
                        what="the refused attempt")
    assert error == REFUSED
    assert receiver.received() == []
    # Allowed while the callback is being retried: the next attempt goes out.
    allow("127.0.0.1/32")
    [request] = receiver.wait_for(1)
    assert request.path == f"/dlr/{message}"
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="the callback delivered")
    attempts = db.sql("SELECT http_status, error FROM callback.message_history(%s) ORDER BY attempt", [message])
    assert attempts[0] == (None, REFUSED) and attempts[-1] == (200, None)


def test_a_host_name_allowed_allows_the_addresses_it_resolves_to(db, receiver, allow):
    allow("localhost")
    make_list(db, receiver.url("/by-address"))
    db.sql("INSERT INTO callback.messages (campaign_id, channel, destination, status, notify_url) "
           "VALUES (1, 'sms', '+1', 'delivered', %s)", [f"http://LOCALHOST:{receiver.port}/by-name"])
    [request] = receiver.wait_for(1, "/by-name")
    assert request.headers["host"].lower() == f"localhost:{receiver.port}"
    # The same receiver by its address is still refused.
    send_message(db)
    db.wait_for("SELECT count(*) > 0 FROM callback.history WHERE url LIKE '%%/by-address' AND error = %s", [REFUSED],
                what="the attempt by address refused")
    assert receiver.received("/by-address") == []


@pytest.mark.parametrize("value", ["10.0.0.0/33", "::1/129", "10.0.0/8", "http://hooks.example", "*.example.com"])
def test_a_malformed_setting_is_refused_with_the_entry_named(cluster, value):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
        cluster.sql("ALTER SYSTEM SET pg_callback.allowed_destinations = %s" % sql.quote(value), dbname="postgres")
    assert value in refused.value.diag.message_detail
