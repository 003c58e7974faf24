"""Client certificates (mutual TLS): a receiver that refuses clients without a certificate of
its own CA (both CAs made here, at test time, with trustme) gets callbacks once the account,
list or campaign has one, the most specific presented; the attempts before fail saying the
receiver wants one. Certificates are checked when written, renewed in place, and their
private keys are unreadable by tenants."""

import psycopg
import pytest
import trustme

from conftest import tls_receiver
from helpers import make_list, send_message

SET = "SELECT callback.set_client_certificate(%s, %s, %s, %s)"


def pem(leaf):
    """The certificate (with its chain) and private key of a trustme leaf, as text."""
    return "".join(b.bytes().decode() for b in leaf.cert_chain_pems), leaf.private_key_pem.bytes().decode()


@pytest.fixture(scope="module")
def clients():
    """The CA the receiver trusts for clients, and what it issued: one certificate each for
    the account, the list and the campaign, named by an email address."""
    ca = trustme.CA()
    return ca, {who: pem(ca.issue_cert(f"{who}@acme.example")) for who in ("account", "list", "campaign", "renewed")}


def test_a_receiver_requiring_a_client_certificate_gets_the_most_specific_one(db, ca, bundle, clients):
    client_ca, certificates = clients
    bundle()
    receiver = tls_receiver(ca, "127.0.0.1", clients_of=client_ca)
    try:
        make_list(db, receiver.url("/list"))
        db.sql("INSERT INTO callback.subscriptions (account_id, name, callback_url, events) "
               "VALUES (1, 'copies', %s, '{message.status}')", [receiver.url("/subscription")])
        send_message(db)
        # No certificate yet: refused and retried. Under TLS 1.3 the receiver's alert saying
        # so races the request being written: the refusal reads as that alert or as the
        # connection it ended.
        db.wait_for("SELECT bool_and(attempts >= 2) AND count(*) = 2 FROM callback.callbacks", what="both retried")
        for (error,) in db.sql("SELECT error FROM callback.deliveries"):
            assert error == "TLS: the receiver requires a client certificate" or error.startswith("connection error"), error
        assert receiver.received() == []

        db.sql(SET, ["account", 1, *certificates["account"]])
        db.sql(SET, ["list", 1, *certificates["list"]])
        db.wait_for("SELECT bool_and(state = 'delivered') FROM callback.callbacks", what="both delivered")
        assert {r.path: r.client for r in receiver.received()} == {
            "/list": ("list@acme.example",), "/subscription": ("account@acme.example",)}

        # The campaign's own beats its list's; deleted, the list's is presented again.
        campaign_id = db.one(SET, ["campaign", 1, *certificates["campaign"]])
        send_message(db, destination="+15550002")
        receiver.wait_for(4)
        db.sql("DELETE FROM callback.client_certificates WHERE id = %s", [campaign_id])
        send_message(db, destination="+15550003")
        receiver.wait_for(6)
        assert [r.client for r in receiver.received("/list")] == [
            ("list@acme.example",), ("campaign@acme.example",), ("list@acme.example",)]

        # Renewed in place: same id, the new certificate presented from the next request on.
        list_id = db.one("SELECT id FROM callback.client_certificates WHERE target = 'list'")
        assert db.one(SET, ["list", 1, *certificates["renewed"]]) == list_id
        send_message(db, destination="+15550004")
        receiver.wait_for(8)
        assert receiver.received("/list")[-1].client == ("renewed@acme.example",)
    finally:
        receiver.close()


def test_certificates_are_checked_when_written_and_nothing_is_kept_of_a_bad_one(db, clients):
    _, certificates = clients
    make_list(db, "https://crm.example.com/dlr")
    certificate, key = certificates["account"]
    _, other_key = certificates["list"]
    bad = [
        (("account", 1, certificate, other_key), "22023", "the private key is not the certificate's"),
        (("account", 1, "not a certificate", key), "22023", "the certificate holds no PEM certificate"),
        (("account", 1, certificate, certificate), "22023", "the private key holds no PEM private key"),
        (("list", 99, certificate, key), "42704", "list 99 does not exist"),
        (("subscription", 1, certificate, key), "22023", "target must be account, list or campaign"),
    ]
    for args, sqlstate, said in bad:
        with pytest.raises(psycopg.Error) as raised:
            db.sql(SET, list(args))
        assert raised.value.sqlstate == sqlstate
        assert said.lower() in (str(raised.value) + (raised.value.diag.message_detail or "")).lower()
    assert db.one("SELECT count(*) FROM callback.client_certificates") == 0
    # A list's certificate goes with the list.
    db.sql(SET, ["list", 1, certificate, key])
    db.sql("DELETE FROM callback.campaigns")
    db.sql("DELETE FROM callback.lists")
    assert db.one("SELECT count(*) FROM callback.client_certificates") == 0


def test_tenants_set_their_own_certificates_but_cannot_read_private_keys(db, cluster, clients):
    _, certificates = clients
    certificate, key = certificates["account"]
    cluster.sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'acme_crm') THEN "
                "CREATE ROLE acme_crm; END IF; END $$", dbname="postgres")
    db.sql("INSERT INTO callback.accounts (name) VALUES ('globex')")
    db.sql("SELECT callback.grant_account(1, 'acme_crm')")
    with db.connect() as conn:
        conn.execute("SET ROLE acme_crm")
        assert conn.execute(SET, ["account", 1, certificate, key]).fetchone()[0] is not None
        assert conn.execute("SELECT certificate FROM callback.client_certificates").fetchone()[0] == certificate
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT private_key FROM callback.client_certificates")
        # Another account's is out of reach: as if it did not exist.
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute(SET, ["account", 2, certificate, key])
    assert db.one("SELECT count(*) FROM callback.client_certificates WHERE account_id = 1") == 1
    assert db.one("SELECT count(*) FROM callback.client_certificates WHERE account_id = 2") == 0
