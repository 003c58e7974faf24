//! Batched reports (seed 002's shape): several events for one target in one request.
//!
//! JSON: `{"results": [envelope, ...]}`. XML: `<results>` holding one `<callback>` element per
//! event, each the element a single event's body has. Form: each event's fields under
//! `results[i]` (`results[0][type]=...&results[0][data][message_id]=...`). Events are in the
//! order they happened.
//!
//! Order: a target's batches go out side by side, so an event whose message (campaign, for
//! campaign events) has an event in a batch not yet done waits until that one is: each
//! message's events still reach the target in order.
//!
//! In: a target's batching (a row of `callback.batching`), events waiting with their envelopes.
//! Out: which waiting events make each batch now, and its body.

use crate::body::{self, Format};
use serde_json::Value;
use std::collections::HashSet;

/// How a target batches its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Batching {
    pub max_count: usize,
    pub max_bytes: usize,
    pub max_wait_ms: i64,
}

impl Batching {
    /// Reads what `callback._batching` returns: `count bytes wait_ms`.
    pub fn parse(text: &str) -> Option<Batching> {
        let mut parts = text.split(' ').map(str::parse::<i64>);
        let mut next = || parts.next().and_then(Result::ok);
        let (count, bytes, wait) = (next()?, next()?, next()?);
        Some(Batching {
            max_count: count.max(1) as usize,
            max_bytes: bytes.max(1) as usize,
            max_wait_ms: wait.max(0),
        })
    }

    /// When the batch of an event that happened `at` (a Postgres `timestamptz`) goes at the
    /// latest, in Unix seconds.
    pub fn send_by(&self, at: i64) -> f64 {
        crate::time::unix_seconds_of_postgres(at) + self.max_wait_ms as f64 / 1000.0
    }
}

/// What a batch's events have in common, which names the batch they wait for: the target
/// (kind and subscription), campaign and URL.
pub fn key(kind: &str, subscription_id: Option<i64>, campaign_id: Option<i64>, url: &str) -> String {
    let id = |id: Option<i64>| id.map_or_else(|| "-".to_string(), |id| id.to_string());
    format!("batch {kind} {} {} {url}", id(subscription_id), id(campaign_id))
}

/// The order key of the batch of `key` whose first event is `first_event`: a batch's own, so
/// that a target's batches go side by side; sql/render/batch_undone.sql finds a target's
/// undone batches by the `{key} #` they start with.
pub fn order_key(key: &str, first_event: i64) -> String {
    format!("{key} #{first_event}")
}

/// An event waiting for its batch.
pub struct Waiting<'a> {
    /// Its envelope as JSON text.
    pub envelope: &'a str,
    /// What it is sent with but its body (URL, headers, credentials, policy): events that
    /// differ in it (a setting changed meanwhile) never share a batch.
    pub template: &'a str,
    /// Whether its max_wait is over.
    pub overdue: bool,
    /// Its message (None: a campaign event): what its order is kept within.
    pub message_id: Option<i64>,
    /// Whether its message has an event in a batch of the target not done yet.
    pub behind: bool,
}

/// A batch to send: which of the waiting events it carries (their places), and its body.
#[derive(Debug, PartialEq)]
pub struct Batch {
    pub events: Vec<usize>,
    pub body: String,
}

/// The batches `waiting` (in the order their events happened) make now: as many events as fit
/// in `max_count` and `max_bytes` of body (an event too large on its own goes alone); the last,
/// not full, only when its first event's max_wait is over and `more_coming` is false (more
/// events are being rendered: they may fill it). An event whose message is `behind` an
/// undone batch, or in a batch made earlier in this call, waits, and so do its message's later
/// events. The events left wait on.
pub fn batches(format: Format, batching: &Batching, waiting: &[Waiting<'_>], more_coming: bool) -> Vec<Batch> {
    let (open, separator, close) = frame(format);
    let mut taken = vec![false; waiting.len()];
    // Messages whose events may not go in the batch being made.
    let mut closed: HashSet<Option<i64>> = waiting.iter().filter(|w| w.behind).map(|w| w.message_id).collect();
    let mut made = Vec::new();
    loop {
        let (mut events, mut parts, mut here) = (Vec::new(), Vec::new(), HashSet::new());
        let mut bytes = open.len() + close.len();
        let mut full = false;
        for (i, w) in waiting.iter().enumerate() {
            if taken[i] || closed.contains(&w.message_id) && !here.contains(&w.message_id) {
                continue;
            }
            if events
                .first()
                .is_some_and(|&first: &usize| waiting[first].template != w.template)
            {
                full = true;
                break;
            }
            let next = part(format, events.len(), w.envelope);
            let more = next.len() + if events.is_empty() { 0 } else { separator.len() };
            if !events.is_empty() && (events.len() >= batching.max_count || bytes + more > batching.max_bytes) {
                full = true;
                break;
            }
            bytes += more;
            events.push(i);
            parts.push(next);
            here.insert(w.message_id);
        }
        let Some(&first) = events.first() else { break };
        full |= events.len() >= batching.max_count;
        if !full && (more_coming || !waiting[first].overdue) {
            break;
        }
        for &i in &events {
            taken[i] = true;
        }
        closed.extend(here);
        made.push(Batch {
            events,
            body: format!("{open}{}{close}", parts.join(separator)),
        });
    }
    made
}

/// What goes before, between and after the events' parts.
fn frame(format: Format) -> (&'static str, &'static str, &'static str) {
    match format {
        Format::Json => ("{\"results\":[", ",", "]}"),
        Format::Xml => ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><results>", "", "</results>"),
        Format::Form => ("", "&", ""),
    }
}

/// One event's part of a batch body, at `place` in it (a form names its fields for it).
fn part(format: Format, place: usize, envelope: &str) -> String {
    if format == Format::Json {
        return envelope.to_string();
    }
    let value: Value = serde_json::from_str(envelope).unwrap_or(Value::Null);
    match format {
        Format::Xml => body::xml_part(&value),
        _ => body::form_part(&format!("results[{place}]"), &value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(i: usize) -> String {
        format!(r#"{{"data":{{"message_id":{i}}},"timestamp":"2026-12-04T10:00:00.000000Z","type":"message.status"}}"#)
    }

    /// Events of messages 0, 1, 2 ... one each.
    fn waiting(envelopes: &[String], overdue: bool) -> Vec<Waiting<'_>> {
        envelopes
            .iter()
            .enumerate()
            .map(|(i, e)| Waiting {
                envelope: e,
                template: "t",
                overdue,
                message_id: Some(i as i64),
                behind: false,
            })
            .collect()
    }

    fn batching(max_count: usize, max_bytes: usize) -> Batching {
        Batching {
            max_count,
            max_bytes,
            max_wait_ms: 1000,
        }
    }

    fn made(batches: &[Batch]) -> Vec<Vec<usize>> {
        batches.iter().map(|b| b.events.clone()).collect()
    }

    #[test]
    fn full_batches_go_and_the_rest_waits_until_overdue() {
        let envelopes: Vec<String> = (0..7).map(envelope).collect();
        let all = batches(Format::Json, &batching(3, 1 << 20), &waiting(&envelopes, false), false);
        assert_eq!(made(&all), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        let all = batches(Format::Json, &batching(3, 1 << 20), &waiting(&envelopes, true), false);
        assert_eq!(made(&all).last().unwrap(), &vec![6]);
        // Overdue, but more events are being rendered: only full ones go.
        let all = batches(Format::Json, &batching(3, 1 << 20), &waiting(&envelopes, true), true);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn json_batches_are_a_results_array_in_order() {
        let envelopes: Vec<String> = (0..2).map(envelope).collect();
        let all = batches(Format::Json, &batching(2, 1 << 20), &waiting(&envelopes, false), false);
        let body: Value = serde_json::from_str(&all[0].body).unwrap();
        assert_eq!(body["results"][1]["data"]["message_id"], 1);
        assert_eq!(body["results"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn bytes_bound_a_batch_but_one_event_always_goes() {
        let envelopes: Vec<String> = (0..4).map(envelope).collect();
        let one = envelopes[0].len();
        // Room for two events and the frame, not three.
        let limit = "{\"results\":[]}".len() + 2 * one + 1;
        let all = batches(Format::Json, &batching(100, limit), &waiting(&envelopes, true), false);
        assert_eq!(made(&all), vec![vec![0, 1], vec![2, 3]]);
        assert!(all.iter().all(|b| b.body.len() <= limit));
        let all = batches(Format::Json, &batching(100, 10), &waiting(&envelopes, true), false);
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn a_changed_template_starts_a_new_batch() {
        let envelopes: Vec<String> = (0..3).map(envelope).collect();
        let mut all = waiting(&envelopes, false);
        all[2].template = "changed";
        assert_eq!(
            made(&batches(Format::Json, &batching(10, 1 << 20), &all, false)),
            vec![vec![0, 1]]
        );
    }

    #[test]
    fn a_message_behind_an_undone_batch_waits_with_its_later_events() {
        let envelopes: Vec<String> = (0..5).map(envelope).collect();
        let mut all = waiting(&envelopes, true);
        // Message 7: behind an undone batch (its first event here), then another event of it.
        all[1].message_id = Some(7);
        all[1].behind = true;
        all[3].message_id = Some(7);
        assert_eq!(
            made(&batches(Format::Json, &batching(10, 1 << 20), &all, false)),
            vec![vec![0, 2, 4]]
        );
    }

    #[test]
    fn a_message_in_one_batch_made_now_waits_out_the_next() {
        let envelopes: Vec<String> = (0..4).map(envelope).collect();
        let mut all = waiting(&envelopes, true);
        // Message 7's two events: the first fills batch one, the second may not go in batch two.
        all[1].message_id = Some(7);
        all[2].message_id = Some(7);
        let got = made(&batches(Format::Json, &batching(2, 1 << 20), &all, false));
        assert_eq!(got, vec![vec![0, 1], vec![3]]);
    }

    #[test]
    fn xml_and_form_carry_each_event_under_results() {
        let envelopes: Vec<String> = (0..2).map(envelope).collect();
        let body = |format| {
            batches(format, &batching(2, 1 << 20), &waiting(&envelopes, false), false)
                .remove(0)
                .body
        };
        let xml = body(Format::Xml);
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><results><callback><data><message_id>0</message_id>"
        ));
        assert!(xml.ends_with("<type>message.status</type></callback></results>"));
        let form = body(Format::Form);
        assert!(form.starts_with("results%5B0%5D%5Bdata%5D%5Bmessage_id%5D=0&"));
        assert!(form.contains("&results%5B1%5D%5Btype%5D=message.status"));
    }

    #[test]
    fn settings_are_read_as_sql_writes_them() {
        assert_eq!(Batching::parse("100 1048576 1000"), Some(batching(100, 1048576)));
        assert_eq!(Batching::parse("garbage"), None);
        // 2000-01-01 plus a second's max_wait.
        assert_eq!(batching(1, 1).send_by(0), 946_684_801.0);
    }
}
