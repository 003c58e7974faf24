//! Batched reports (seed 002's shape): several events for one target in one request.
//!
//! JSON: `{"results": [envelope, ...]}`. XML: `<results>` holding one `<callback>` element per
//! event, each the element a single event's body has. Form: each event's fields under
//! `results[i]` (`results[0][type]=...&results[0][data][message_id]=...`). Events are in the
//! order they happened.
//!
//! In: a target's batching (a row of `callback.batching`), events waiting with their envelopes.
//! Out: which lane an event goes in, which waiting events make each batch, and its body.

use crate::body::{self, Format};
use serde_json::Value;
use std::ops::Range;

/// How a target batches its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Batching {
    pub max_count: usize,
    pub max_bytes: usize,
    pub max_wait_ms: i64,
    /// Lanes: batches of the target on the wire at once.
    pub parallel: u32,
}

impl Batching {
    /// Reads what `callback._batching` returns: `count bytes wait_ms parallel`.
    pub fn parse(text: &str) -> Option<Batching> {
        let mut parts = text.split(' ').map(str::parse::<i64>);
        let mut next = || parts.next().and_then(Result::ok);
        let (count, bytes, wait, parallel) = (next()?, next()?, next()?, next()?);
        Some(Batching {
            max_count: count.max(1) as usize,
            max_bytes: bytes.max(1) as usize,
            max_wait_ms: wait.max(0),
            parallel: parallel.clamp(1, 16) as u32,
        })
    }

    /// The lane of an event with this order key (its message, else its campaign, and URL):
    /// the same for every event of one message, so that they stay in order.
    pub fn lane(&self, order_key: &str) -> u32 {
        // FNV-1a: stable across builds, unlike the standard library's hasher.
        let hash = order_key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % u64::from(self.parallel)) as u32
    }
}

/// What a batch's events have in common, which names the batch they wait for: the target
/// (kind and subscription), campaign, lane and URL.
pub fn key(kind: &str, subscription_id: Option<i64>, campaign_id: Option<i64>, lane: u32, url: &str) -> String {
    let id = |id: Option<i64>| id.map_or_else(|| "-".to_string(), |id| id.to_string());
    format!("batch {kind} {} {} {lane} {url}", id(subscription_id), id(campaign_id))
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
}

/// A batch to send: which of the waiting events it carries, and its body.
#[derive(Debug, PartialEq)]
pub struct Batch {
    pub events: Range<usize>,
    pub body: String,
}

/// The batches `waiting` (in the order their events happened) make now: as many events as fit
/// in `max_count` and `max_bytes` of body (an event too large on its own goes alone); the last,
/// not full, only when its first event's max_wait is over. The events left wait on.
pub fn batches(format: Format, batching: &Batching, waiting: &[Waiting<'_>]) -> Vec<Batch> {
    let (open, separator, close) = frame(format);
    let mut made = Vec::new();
    let mut start = 0;
    while start < waiting.len() {
        let mut parts = vec![part(format, 0, waiting[start].envelope)];
        let mut bytes = open.len() + close.len() + parts[0].len();
        let mut end = start + 1;
        while end < waiting.len()
            && end - start < batching.max_count
            && waiting[end].template == waiting[start].template
        {
            let next = part(format, end - start, waiting[end].envelope);
            if bytes + separator.len() + next.len() > batching.max_bytes {
                break;
            }
            bytes += separator.len() + next.len();
            parts.push(next);
            end += 1;
        }
        let full = end < waiting.len() || end - start >= batching.max_count;
        if !full && !waiting[start].overdue {
            break;
        }
        made.push(Batch {
            events: start..end,
            body: format!("{open}{}{close}", parts.join(separator)),
        });
        start = end;
    }
    made
}

/// The body of a batch of these envelopes (JSON text each).
pub fn body(format: Format, envelopes: &[&str]) -> String {
    let (open, separator, close) = frame(format);
    let parts: Vec<String> = envelopes.iter().enumerate().map(|(i, e)| part(format, i, e)).collect();
    format!("{open}{}{close}", parts.join(separator))
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

    fn waiting(envelopes: &[String], overdue: bool) -> Vec<Waiting<'_>> {
        envelopes
            .iter()
            .map(|e| Waiting {
                envelope: e,
                template: "t",
                overdue,
            })
            .collect()
    }

    fn batching(max_count: usize, max_bytes: usize) -> Batching {
        Batching {
            max_count,
            max_bytes,
            max_wait_ms: 1000,
            parallel: 1,
        }
    }

    #[test]
    fn full_batches_go_and_the_rest_waits_until_overdue() {
        let envelopes: Vec<String> = (0..7).map(envelope).collect();
        let made = batches(Format::Json, &batching(3, 1 << 20), &waiting(&envelopes, false));
        assert_eq!(
            made.iter().map(|b| b.events.clone()).collect::<Vec<_>>(),
            vec![0..3, 3..6]
        );
        let made = batches(Format::Json, &batching(3, 1 << 20), &waiting(&envelopes, true));
        assert_eq!(made.last().unwrap().events, 6..7);
    }

    #[test]
    fn json_batches_are_a_results_array_in_order() {
        let envelopes: Vec<String> = (0..2).map(envelope).collect();
        let made = batches(Format::Json, &batching(2, 1 << 20), &waiting(&envelopes, false));
        let body: Value = serde_json::from_str(&made[0].body).unwrap();
        assert_eq!(body["results"][1]["data"]["message_id"], 1);
        assert_eq!(body["results"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn bytes_bound_a_batch_but_one_event_always_goes() {
        let envelopes: Vec<String> = (0..4).map(envelope).collect();
        let one = envelopes[0].len();
        // Room for two events and the frame, not three.
        let limit = "{\"results\":[]}".len() + 2 * one + 1;
        let made = batches(Format::Json, &batching(100, limit), &waiting(&envelopes, true));
        assert_eq!(made.iter().map(|b| b.events.len()).collect::<Vec<_>>(), vec![2, 2]);
        assert!(made.iter().all(|b| b.body.len() <= limit));
        let made = batches(Format::Json, &batching(100, 10), &waiting(&envelopes, true));
        assert_eq!(made.len(), 4);
    }

    #[test]
    fn a_changed_template_starts_a_new_batch() {
        let envelopes: Vec<String> = (0..3).map(envelope).collect();
        let mut all = waiting(&envelopes, false);
        all[2].template = "changed";
        let made = batches(Format::Json, &batching(10, 1 << 20), &all);
        assert_eq!(made.iter().map(|b| b.events.clone()).collect::<Vec<_>>(), vec![0..2]);
    }

    #[test]
    fn xml_and_form_carry_each_event_under_results() {
        let envelopes: Vec<String> = (0..2).map(envelope).collect();
        let refs: Vec<&str> = envelopes.iter().map(String::as_str).collect();
        let xml = body(Format::Xml, &refs);
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><results><callback><data><message_id>0</message_id>"
        ));
        assert!(xml.ends_with("<type>message.status</type></callback></results>"));
        let form = body(Format::Form, &refs);
        assert!(form.starts_with("results%5B0%5D%5Bdata%5D%5Bmessage_id%5D=0&"));
        assert!(form.contains("&results%5B1%5D%5Btype%5D=message.status"));
    }

    #[test]
    fn a_message_keeps_its_lane() {
        let b = Batching {
            parallel: 8,
            ..batching(100, 1 << 20)
        };
        assert_eq!(b.lane("message:42 https://x/"), b.lane("message:42 https://x/"));
        let lanes: std::collections::HashSet<u32> =
            (0..100).map(|i| b.lane(&format!("message:{i} https://x/"))).collect();
        assert_eq!(lanes.len(), 8);
        assert_eq!(Batching::parse("100 1048576 1000 8"), Some(b));
        assert_eq!(Batching::parse("garbage"), None);
    }
}
