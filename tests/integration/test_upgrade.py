"""Upgrades: each released version (its install script frozen in sql/releases/), with data and
callbacks in flight, becomes the current version by ALTER EXTENSION pg_callback UPDATE (0.1.0
through 0.2.0); the data is intact, delivery goes on, and the schema is the one a fresh install
makes."""

import shutil
import subprocess

import pytest

from conftest import DATABASE, ROOT
from helpers import make_list, send_message

RELEASED = ["0.1.0", "0.2.0"]
FRESH = "callbacks_fresh"

DATA = ["accounts", "lists", "campaigns", "members", "messages", "callbacks", "deliveries", "alerts",
        "retry_policies", "statuses", "account_roles"]

# Everything the extension defines, by name (no oids), one line each.
SCHEMA = """
SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
       || md5(pg_get_functiondef(p.oid)) || ' acl ' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(p.proacl) a), '')
FROM pg_proc p WHERE p.pronamespace = 'callback'::regnamespace
UNION ALL
SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' rls ' || c.relrowsecurity || ' ' || coalesce(c.reloptions::text, '')
       || ' acl ' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(c.relacl) a), '')
       || coalesce(' view ' || md5(pg_get_viewdef(c.oid)), '') || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '')
FROM pg_class c WHERE c.relnamespace = 'callback'::regnamespace
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
       || ' default ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
       || ' acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'callback'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'callback'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
WHERE c.relnamespace = 'callback'::regnamespace
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'callback'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || tablename || ' ' || policyname || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
FROM pg_policies WHERE schemaname = 'callback'
UNION ALL
SELECT 'type ' || t.typname || ' ' || coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                                FROM pg_enum e WHERE e.enumtypid = t.oid), '')
FROM pg_type t WHERE t.typnamespace = 'callback'::regnamespace
UNION ALL
SELECT 'dumped ' || u.x::regclass::text || ' ' || coalesce(u.cond, '')
FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(x, cond) WHERE e.extname = 'pg_callback'
UNION ALL
SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_callback')
ORDER BY 1
"""


def schema(cluster, dbname):
    return [r[0] for r in cluster.sql(SCHEMA, dbname=dbname)]


# Since 0.3.0 a callback's credentials are in callback.requests (the view callback.callbacks
# leaves them out), compared apart; and a done callback keeps no due time.
NOT_IN_CALLBACKS = ["auth_header", "signing_secret", "due_at"]


def columns(db):
    """The columns of each table of DATA, in order."""
    return {t: [r[0] for r in db.sql("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                                     "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", [f"callback.{t}"])
                if not (t == "callbacks" and r[0] in NOT_IN_CALLBACKS)]
            for t in DATA}


def credentials(db, table):
    """Each callback's credentials, from the table that has them."""
    return db.one("SELECT string_agg(r::text, ' | ' ORDER BY r.id) "
                  f"FROM (SELECT id, auth_header, signing_secret FROM callback.{table}) r")


def data(db, columns):
    """Every row of each table, these columns of it, as one text in a stable order."""
    def rows(table):
        listed = ", ".join(f'"{c}"' for c in columns[table])
        return db.one(f"SELECT coalesce(string_agg(r::text, ' | ' ORDER BY r::text), '') "
                      f"FROM (SELECT {listed} FROM callback.{table}) r")
    return {t: rows(t) for t in DATA}


def install_released_script(version):
    sharedir = subprocess.run(["/usr/lib/postgresql/15/bin/pg_config", "--sharedir"],
                              capture_output=True, text=True, check=True).stdout.strip()
    shutil.copy(ROOT / f"sql/releases/pg_callback--{version}.sql", f"{sharedir}/extension/")


@pytest.mark.parametrize("released", RELEASED)
def test_update_from_a_released_version_keeps_data_and_behaviour(db, receiver, cluster, released):
    install_released_script(released)
    db.sql("DROP EXTENSION pg_callback CASCADE")
    db.sql(f"CREATE EXTENSION pg_callback VERSION '{released}'")
    assert db.one("SELECT extversion FROM pg_extension WHERE extname = 'pg_callback'") == released
    # Data of every kind, a callback delivered, one held.
    db.sql("INSERT INTO callback.accounts (name) VALUES ('acme')")
    db.sql("INSERT INTO callback.retry_policies (name, kind, max_attempts, step) VALUES ('patient', 'fixed', 5, '10 minutes')")
    make_list(db, receiver.url("/dlr/${id}"), retry_policy="patient", env={"tenant": "acme"},
              callback_bearer_token="tok-1")
    db.sql("INSERT INTO callback.members (list_id, destination, attributes) VALUES (1, '+15550001', '{\"crmId\": \"c-7\"}')")
    send_message(db, member_id=1)
    receiver.wait_for(1)
    db.wait_for("SELECT state = 'delivered' FROM callback.callbacks", what="the callback delivered")
    db.sql("SELECT callback.disable_campaign_callbacks(1)")
    send_message(db)
    kept = columns(db)
    before = data(db, kept)
    signed = credentials(db, "callbacks")

    db.sql("ALTER EXTENSION pg_callback UPDATE")
    assert db.one("SELECT extversion FROM pg_extension WHERE extname = 'pg_callback'") != released
    assert data(db, kept) == before
    assert credentials(db, "requests") == signed
    # Callbacks recorded before 0.3.0 got their endpoint.
    assert db.one("SELECT count(*) FROM callback.callbacks WHERE endpoint = callback._endpoint(url)") == 2

    # It goes on: the held callback is released, a new one recorded and delivered, the new
    # views see them.
    db.sql("SELECT callback.enable_campaign_callbacks(1)")
    send_message(db, destination="+15550003")
    receiver.wait_for(3)
    db.wait_for("SELECT count(*) = 3 FROM callback.callbacks WHERE state = 'delivered'", what="three delivered")
    assert db.one("SELECT delivered FROM callback.campaign_summary WHERE campaign_id = 1") == 3

    # The same schema as a fresh install.
    upgraded = schema(db, DATABASE)
    cluster.sql(f"DROP DATABASE IF EXISTS {FRESH}", dbname="postgres")
    cluster.sql(f"CREATE DATABASE {FRESH}", dbname="postgres")
    try:
        cluster.sql("CREATE EXTENSION pg_callback", dbname=FRESH)
        fresh = schema(cluster, FRESH)
    finally:
        cluster.sql(f"DROP DATABASE {FRESH}", dbname="postgres")
    assert sorted(set(fresh) - set(upgraded)) == [] and sorted(set(upgraded) - set(fresh)) == []
