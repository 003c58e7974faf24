"""Small helpers shared by the integration tests: a list and campaign, a message."""

import json


def make_list(db, url, **settings):
    """A list with callback_url = url and the given settings, and campaign 1 created from it."""
    row = {"account_id": 1, "name": "customers", "callback_url": url, **settings}
    values = [json.dumps(v) if isinstance(v, dict) else v for v in row.values()]
    placeholders = ", ".join(["%s"] * len(row))
    db.sql(f"INSERT INTO callback.lists ({', '.join(row)}) VALUES ({placeholders})", values)
    db.sql("INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'spring')")


def send_message(db, **columns):
    """Inserts a message of campaign 1, delivered unless said otherwise; returns its id."""
    row = {"campaign_id": 1, "channel": "sms", "destination": "+15550001", "status": "delivered", **columns}
    placeholders = ", ".join(["%s"] * len(row))
    return db.one(f"INSERT INTO callback.messages ({', '.join(row)}) VALUES ({placeholders}) RETURNING id",
                  list(row.values()))


def rows_of(cluster, table, **database):
    """Every row of callback.<table> as one text, in a stable order: to compare contents."""
    return cluster.sql(f"SELECT coalesce(string_agg(t::text, ' | ' ORDER BY t::text), '') FROM callback.{table} t",
                       **database)[0][0]
