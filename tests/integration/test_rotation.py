"""Signing-secret rotation (Standard Webhooks): callback.rotate_signing_secret() gives a target a
new secret; until the overlap ends every request carries both signatures, space-separated in
webhook-signature, so a receiver verifying with the old or with the new secret accepts it (checked
with the standardwebhooks package), callbacks rendered before the rotation included. After
the overlap only the new secret signs."""

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from helpers import make_list, send_message

OLD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def verifies(secret, request):
    try:
        Webhook(secret).verify(request.body, request.headers)
        return True
    except WebhookVerificationError:
        return False


def test_both_signatures_during_the_overlap_then_only_the_new_one(db, receiver):
    make_list(db, receiver.url("/dlr"), signing_secret=OLD)
    # One callback rendered with the old secret, held until after the rotation.
    db.sql("SELECT callback.disable_campaign_callbacks(1)")
    send_message(db)
    db.wait_for("SELECT state = 'held' FROM callback.callbacks", what="the callback held")
    new = db.one("SELECT callback.rotate_signing_secret('list', 1)")
    assert new.startswith("whsec_") and new != OLD
    assert db.one("SELECT signing_secret FROM callback.campaigns WHERE id = 1") == new, "the campaign follows its list"
    db.sql("SELECT callback.enable_campaign_callbacks(1)")
    send_message(db, destination="+15550002")  # rendered with the new secret
    for request in receiver.wait_for(2, "/dlr"):
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        assert verifies(OLD, request) and verifies(new, request)

    # A rotation with no overlap: from now on only the newest secret signs.
    newest = db.one("SELECT callback.rotate_signing_secret('list', 1, overlap => '0 seconds')")
    send_message(db, destination="+15550003")
    last = receiver.wait_for(3, "/dlr")[-1]
    assert len(last.headers["webhook-signature"].split(" ")) == 1
    assert verifies(newest, last) and not verifies(new, last) and not verifies(OLD, last)


def test_rotation_is_refused_for_what_cannot_be_rotated(db):
    import psycopg

    make_list(db, "https://crm.example.com/dlr")
    for call, error in [("SELECT callback.rotate_signing_secret('account', 1)", psycopg.errors.InvalidParameterValue),
                        ("SELECT callback.rotate_signing_secret('list', 99)", psycopg.errors.UndefinedObject),
                        ("SELECT callback.rotate_signing_secret('list', 1, '-1 hour')", psycopg.errors.InvalidParameterValue)]:
        with pytest.raises(error):
            db.sql(call)
    assert db.one("SELECT signing_secret FROM callback.lists WHERE id = 1") is None
