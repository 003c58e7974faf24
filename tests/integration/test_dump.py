"""pg_dump keeps what users wrote: a real dump of the workers' database, restored into a new
database (triggers off, as the README says), holds the same configuration, queue, history
and sequences, and the restored extension records callbacks as before."""

import trustme

from conftest import DATABASE, shell
from helpers import make_list, rows_of, send_message

TABLES = ["accounts", "account_roles", "retry_policies", "statuses", "lists", "campaigns", "members", "messages",
          "attempts", "subscriptions", "delivery_webhooks", "alerts", "callbacks_undone", "callbacks_done",
          "deliveries", "client_certificates", "alert_emails", "campaign_reports", "batching", "batch_events"]
SEQUENCES = ["accounts_id_seq", "lists_id_seq", "campaigns_id_seq", "members_id_seq", "messages_id_seq",
             "attempts_id_seq", "subscriptions_id_seq", "alerts_id_seq", "callbacks_id_seq", "deliveries_id_seq",
             "client_certificates_id_seq", "alert_emails_id_seq", "batching_id_seq", "batch_events_id_seq"]
RESTORED = "callbacks_restored"


def contents(cluster, dbname):
    """Every row of every table, and where each sequence stands."""
    rows = {t: rows_of(cluster, t, dbname=dbname) for t in TABLES}
    rows.update({s: cluster.sql(f"SELECT last_value FROM callback.{s}", dbname=dbname)[0][0] for s in SEQUENCES})
    return rows


def test_dump_and_restore_keep_configuration_queue_history_and_sequences(db, receiver, cluster):
    cluster.sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'acme_crm') THEN "
                "CREATE ROLE acme_crm; END IF; END $$", dbname="postgres")
    db.sql("INSERT INTO callback.retry_policies (name, kind, max_attempts, step) VALUES ('patient', 'fixed', 5, '10 minutes')")
    db.sql("INSERT INTO callback.statuses (status, final, description) VALUES ('bounced', true, 'Bounced back.')")
    make_list(db, receiver.url("/dlr/${id}"), signing_secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY",
              retry_policy="patient", env={"tenant": "acme"})
    db.sql("INSERT INTO callback.members (list_id, destination, attributes) VALUES (1, '+15550001', '{\"crmId\": \"c-7\"}')")
    db.sql("INSERT INTO callback.subscriptions (account_id, events, callback_url) VALUES (1, '{message.final}', %s)",
           [receiver.url("/final")])
    db.sql("SELECT callback.create_delivery_webhook(1, 'https://crm.example.com/status')")
    db.sql("SELECT callback.grant_account(1, 'acme_crm')")
    client = trustme.CA().issue_cert("crm@acme.example")
    db.sql("SELECT callback.set_client_certificate('account', 1, %s, %s)",
           [client.cert_chain_pems[0].bytes().decode(), client.private_key_pem.bytes().decode()])
    for _ in range(3):
        send_message(db, member_id=1)
    db.wait_for("SELECT count(*) = 6 FROM callback.callbacks_done", what="six callbacks delivered")
    # Pending callbacks: held while the campaign's callbacks are disabled. The subscription's
    # now wait for their batch.
    db.sql("SELECT callback.disable_campaign_callbacks(1)")
    db.sql("SELECT callback.set_batching('subscription', 1, 10, max_wait => '1 hour')")
    send_message(db, status="bounced")
    send_message(db, status="bounced")
    db.wait_for("SELECT count(*) = 2 FROM callback.batch_events", what="two events waiting for their batch")
    db.wait_for("SELECT count(*) = 2 FROM callback.callbacks_undone", what="two callbacks held")
    assert db.sql("SELECT state::text, count(*) FROM callback.callbacks_undone GROUP BY 1") == [("held", 2)]
    before = contents(cluster, DATABASE)

    dump = f"{cluster.dir}/callbacks.sql"
    shell(f"as_postgres $PG_BIN/pg_dump -h {cluster.dir} -p {cluster.port} -U postgres -d {DATABASE} -f {dump}")
    cluster.sql(f"DROP DATABASE IF EXISTS {RESTORED}", dbname="postgres")
    cluster.sql(f"CREATE DATABASE {RESTORED}", dbname="postgres")
    shell(f"PGOPTIONS='-c session_replication_role=replica' psql -X -q -v ON_ERROR_STOP=1 "
          f"-h {cluster.dir} -p {cluster.port} -U postgres -d {RESTORED} -f {dump}")
    try:
        after = contents(cluster, RESTORED)
        assert {t: after[t] == before[t] for t in before} == {t: True for t in before}
        assert before["callbacks_undone"] and before["deliveries"] and before["account_roles"]
        # Restored, it goes on: the next message takes the next id and records its callback.
        next_id = cluster.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status)
                                 VALUES (1, 'sms', '+15550009', 'delivered') RETURNING id""", dbname=RESTORED)[0][0]
        assert next_id == before["messages_id_seq"] + 1
        # No worker serves this database: its event is rendered here, as a worker would.
        assert cluster.sql("SELECT callback._expand_events(100)", dbname=RESTORED) == [(1,)]
        assert cluster.sql("SELECT state::text FROM callback.callbacks WHERE message_id = %s AND target = 'campaign'",
                           [next_id], dbname=RESTORED) == [("held",)]
    finally:
        cluster.sql(f"DROP DATABASE {RESTORED}", dbname="postgres")
