//! Prints the bodies `core/src/body_dictionary_v1.txt` was made of: an envelope of every event
//! in every format, as rendering makes them, the commonest last (zstd finds matches nearer the
//! end of a dictionary with shorter offsets).
//!
//! The file is frozen (src/packed.rs): this is how a version 2 would be made, written to a new
//! file, when bodies change enough that version 1 compresses them badly.
//!
//! cargo run -p pg_callback_core --example body_dictionary > core/src/body_dictionary_v2.txt

use pg_callback_core::body::{self, Format};
use pg_callback_core::callback::envelope;
use serde_json::{json, Value};

fn main() {
    // 2026-12-05 03:14:07.667354 UTC, as Postgres counts (microseconds since 2000-01-01).
    let at = 849_755_647_667_354;
    let message = |status: &str, previous: &str, is_final: bool| {
        json!({
            "message_id": 100_007, "account_id": 1, "campaign_id": 12, "list_id": 3, "member_id": 5_021,
            "batch_id": "batch-2026-12-05", "channel": "sms", "destination": "+306961110621",
            "status": status, "previous_status": previous, "final": is_final,
            "error": null, "callback_data": "order=982",
            "created_at": "2026-12-05T03:14:00.249238Z", "status_at": "2026-12-05T03:14:07.667354Z",
        })
    };
    let mut final_ = message("completed", "sent", true);
    final_["attempt_ids"] = json!([1, 2]);
    let mut problem = message("error", "queued", true);
    problem["error"] = json!({"code": "EC_ABSENT_SUBSCRIBER", "message": "template variable missing"});
    let attempt = json!({
        "attempt_id": 1, "attempt_no": 1, "message_id": 100_007, "account_id": 1, "campaign_id": 12,
        "channel": "voice", "destination": "+919876543210", "status": "busy",
        "started_at": "2026-12-05T03:13:00.000000Z", "ended_at": "2026-12-05T03:13:47.000000Z",
        "callback_data": "crm-ref-1",
    });
    let complete = json!({
        "campaign_id": 12, "list_id": 3, "account_id": 1, "name": "renewals", "status": "completed",
        "created_at": "2026-12-04T11:00:00.000000Z", "ended_at": "2026-12-05T12:30:00.000000Z",
        "recipients": 2, "outcomes": {"completed": 1, "error": 1},
    });
    let disabled = json!({
        "alert_id": 1, "campaign_id": 12, "list_id": 3, "account_id": 1, "name": "renewals",
        "reason": "callback 3 (message.status) to https://crm.example.com/dlr failed after 3 attempts: HTTP 500 is not a success",
        "callback_id": 3, "failed_event": "message.status", "failed_url": "https://crm.example.com/dlr",
        "attempts": 3, "last_http_status": 500, "last_error": "HTTP 500 is not a success",
        "notification_list": ["ops@example.com"], "disabled_at": "2026-12-05T05:00:00.000000Z",
    });
    let events: Vec<(&str, Value)> = vec![
        ("campaign.callbacks_disabled", disabled),
        ("campaign.complete", complete),
        ("message.attempt", attempt),
        ("message.problem", problem),
        ("message.final", final_),
        ("message.sent", message("sent", "queued", false)),
        ("message.status", message("delivered", "sent", true)),
    ];
    let mut out = String::new();
    for format in [Format::Form, Format::Xml, Format::Json] {
        for (event, data) in &events {
            out.push_str(&body::render(format, &envelope(event, at, data)));
        }
    }
    out.push_str("{\"results\":[");
    print!("{out}");
}
