"""Seed 003 end to end: an attempt callback per call attempt, a final callback per recipient
with every attempt id, a campaign-complete callback when the campaign ends, and the report of
every recipient's outcome as CSV."""

import csv
import io

from helpers import make_list


def test_attempts_finals_completion_and_the_csv_report(db, receiver):
    make_list(db, receiver.url("/calls"),
              event_urls={"message.attempt": receiver.url("/attempt"), "message.final": receiver.url("/final"),
                          "campaign.complete": receiver.url("/done")})
    db.sql("UPDATE callback.campaigns SET status = 'running'")
    db.sql("INSERT INTO callback.members (list_id, destination) VALUES (1, '+919876543210'), (1, '+919876543211')")
    first = db.one("""INSERT INTO callback.messages (campaign_id, member_id, channel, destination, callback_data)
                      VALUES (1, 1, 'voice', '+919876543210', 'ref, "one"') RETURNING id""")
    second = db.one("""INSERT INTO callback.messages (campaign_id, member_id, channel, destination)
                       VALUES (1, 2, 'voice', '+919876543211') RETURNING id""")
    busy = db.one("INSERT INTO callback.attempts (message_id, status) VALUES (%s, 'busy') RETURNING id", [first])
    answered = db.one("INSERT INTO callback.attempts (message_id, status) VALUES (%s, 'completed') RETURNING id", [first])
    db.sql("UPDATE callback.messages SET status = 'completed' WHERE id = %s", [first])
    db.sql("INSERT INTO callback.attempts (message_id, status) VALUES (%s, 'no-answer')", [second])
    db.sql("UPDATE callback.messages SET status = 'failed', error_code = 'NO_ANSWER' WHERE id = %s", [second])
    db.sql("UPDATE callback.campaigns SET status = 'completed'")

    attempts = [a.json()["data"] for a in receiver.wait_for(3, "/attempt")]
    # In event order for each message (messages are sent in parallel).
    assert [a["status"] for a in attempts if a["message_id"] == first] == ["busy", "completed"]
    assert [a["status"] for a in attempts if a["message_id"] == second] == ["no-answer"]
    finals = {f.json()["data"]["message_id"]: f.json()["data"] for f in receiver.wait_for(2, "/final")}
    assert finals[first]["attempt_ids"] == [busy, answered] and finals[first]["status"] == "completed"
    assert finals[second]["status"] == "failed"
    [done] = receiver.wait_for(1, "/done")
    data = done.json()["data"]
    assert (data["status"], data["recipients"], data["outcomes"]) == ("completed", 2, {"completed": 1, "failed": 1})

    report = db.one("SELECT callback.campaign_report_csv(1)")
    rows = list(csv.DictReader(io.StringIO(report)))
    assert [(r["message_id"], r["status"], r["attempts"], r["attempt_ids"]) for r in rows] == [
        (str(first), "completed", "2", f"{busy} {answered}"),
        (str(second), "failed", "1", str(busy + 2)),
    ]
    assert rows[0]["callback_data"] == 'ref, "one"' and rows[1]["error_code"] == "NO_ANSWER"
