//! Callbacks: one event rendered for one target, everything needed to send it fixed when the
//! event is rendered (DESIGN.md §4: a later change of URL affects later events only).
//!
//! In: the event's type, scope, template variables and envelope, and a target. Out: a row of
//! the queue (but for its state and webhook-id, which the extension adds), or why the URL or
//! body could not be made.

use crate::body::{self, Format};
use crate::event::Scope;
use crate::target::{Kind, Target};
use crate::template::{self, TemplateError};
use crate::time::iso_of_postgres;
use base64::Engine;
use serde_json::{json, Map, Value};

/// A callback rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct Callback {
    pub event: String,
    pub account_id: i64,
    pub campaign_id: Option<i64>,
    pub message_id: Option<i64>,
    pub kind: Kind,
    pub subscription_id: Option<i64>,
    pub url: String,
    pub method: String,
    /// The request's headers as a JSON object (the target's, and Content-Type).
    pub headers: String,
    /// None for a GET.
    pub body: Option<String>,
    pub auth_header: Option<String>,
    pub signing_secret: Option<String>,
    pub retry_policy: String,
    /// Callbacks with the same order key are delivered in the order their events happened.
    pub order_key: String,
    /// Held while the campaign's callbacks are disabled.
    pub held: bool,
}

/// Why a callback could not be rendered.
#[derive(Clone, Debug, PartialEq)]
pub enum RenderError {
    /// The URL template could not be filled.
    Template { template: String, error: TemplateError },
    /// The target names a body format that does not exist.
    Format(String),
}

/// The body of every callback of an event: the Standard Webhooks envelope
/// `{"type", "timestamp", "data"}`; `at` is when it happened (a Postgres `timestamptz`).
pub fn envelope(event: &str, at: i64, data: &Value) -> Value {
    json!({"type": event, "timestamp": iso_of_postgres(at), "data": data})
}

/// The endpoint a URL's requests go to: its scheme, host and port, the port left out when it
/// is the scheme's default (`https://hooks.example.com`, `http://127.0.0.1:8080`), lowercased,
/// without credentials. Endpoints have their own limits and appear in the operating views;
/// the queue stores each callback's (`callback._endpoint`, a generated column).
/// A URL that does not parse (none passes the setting checks) is its lowercased text up to
/// the path.
pub fn endpoint(url: &str) -> String {
    // Only the scheme and authority are parsed: a whole URL's path and query cost most of it.
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    match url::Url::parse(&url[..end]) {
        Ok(parsed) if parsed.has_host() => parsed.origin().ascii_serialization(),
        _ => url[..end].to_ascii_lowercase(),
    }
}

/// The order key of a callback to `url` (filled in, or the template when it could not be).
pub fn order_key(scope: &Scope, url: &str) -> String {
    order_key_of(scope.message_id, scope.campaign_id, url)
}

/// The order key of a callback of a message or campaign to `url`: its message, else its
/// campaign, then the URL. `callback._order_key` works out with it the keys that requests do
/// not store.
pub fn order_key_of(message_id: Option<i64>, campaign_id: Option<i64>, url: &str) -> String {
    match (message_id, campaign_id) {
        (Some(id), _) => format!("message:{id} {url}"),
        (None, Some(id)) => format!("campaign:{id} {url}"),
        (None, None) => format!(" {url}"),
    }
}

/// Where a batch of callbacks a worker rendered goes, each in the batch's order.
#[derive(Debug, PartialEq)]
pub struct Placed {
    /// Behind an earlier callback of its order key in the batch: it waits for that one.
    pub behind: Vec<bool>,
    /// Leased to the worker at once, to be sent without being claimed after: due now (not
    /// held, not behind), of an endpoint not in `full`, `count` at most.
    pub leased: Vec<bool>,
}

/// Places `callbacks` rendered by a worker that can take `count` more, and has as many of the
/// endpoints in `full` as it can send soon.
pub fn place(callbacks: &[Callback], count: usize, full: &[String]) -> Placed {
    let mut keys = std::collections::HashSet::new();
    let behind: Vec<bool> = callbacks.iter().map(|c| !keys.insert(c.order_key.as_str())).collect();
    let mut room = count;
    let leased = callbacks
        .iter()
        .zip(&behind)
        .map(|(c, &behind)| {
            let lease = room > 0 && !c.held && !behind && (full.is_empty() || !full.contains(&endpoint(&c.url)));
            room -= usize::from(lease);
            lease
        })
        .collect();
    Placed { behind, leased }
}

/// The Authorization header a target's credentials make (basic auth wins over a token).
fn auth_header(target: &Target) -> Option<String> {
    match (&target.basic_auth, &target.bearer_token) {
        (Some(basic), _) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(basic)
        )),
        (None, Some(token)) => Some(format!("Bearer {token}")),
        (None, None) => None,
    }
}

/// Renders `event` for `target`: the URL filled from `vars` (plus `event`), for a POST the
/// body from `envelope` in the target's format.
#[allow(clippy::too_many_arguments)]
pub fn render(
    event: &str,
    scope: &Scope,
    kind: Kind,
    subscription_id: Option<i64>,
    target: Target,
    held: bool,
    vars: &Map<String, Value>,
    envelope: &Value,
) -> Result<Callback, RenderError> {
    let url = template::render(&target.url, vars).map_err(|error| RenderError::Template {
        template: target.url.clone(),
        error,
    })?;
    let mut headers = crate::event::json_object(target.headers.as_deref());
    let body = match target.method.as_str() {
        "POST" => {
            let format = Format::parse(&target.format).ok_or_else(|| RenderError::Format(target.format.clone()))?;
            headers.insert("Content-Type".into(), format.content_type().into());
            Some(body::render(format, envelope))
        }
        _ => None,
    };
    Ok(Callback {
        event: event.to_string(),
        account_id: scope.account_id,
        campaign_id: scope.campaign_id,
        message_id: scope.message_id,
        kind,
        subscription_id,
        order_key: order_key(scope, &url),
        url,
        method: target.method.clone(),
        headers: Value::Object(headers).to_string(),
        body,
        auth_header: auth_header(&target),
        signing_secret: target.signing_secret,
        retry_policy: target.retry_policy,
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope<'static> {
        Scope {
            account_id: 1,
            campaign_id: Some(2),
            message_id: Some(3),
            channel: None,
            notify_url: None,
            notify_format: None,
        }
    }

    fn vars() -> Map<String, Value> {
        json!({"id": 3, "event": "message.status"}).as_object().unwrap().clone()
    }

    #[test]
    fn a_post_carries_the_envelope_and_its_content_type() {
        let target = Target {
            headers: Some(r#"{"X-Tenant": "a"}"#.into()),
            bearer_token: Some("t0k".into()),
            ..Target::plain("https://h/m/${id}", "json")
        };
        let envelope = envelope("message.status", 0, &json!({"status": "delivered"}));
        let c = render(
            "message.status",
            &scope(),
            Kind::List,
            None,
            target,
            false,
            &vars(),
            &envelope,
        )
        .unwrap();
        assert_eq!(c.url, "https://h/m/3");
        assert_eq!(endpoint(&c.url), "https://h");
        assert_eq!(c.order_key, "message:3 https://h/m/3");
        assert_eq!(c.auth_header.as_deref(), Some("Bearer t0k"));
        let headers: Value = serde_json::from_str(&c.headers).unwrap();
        assert_eq!(headers, json!({"X-Tenant": "a", "Content-Type": "application/json"}));
        let body: Value = serde_json::from_str(c.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["timestamp"], "2000-01-01T00:00:00.000000Z");
        assert_eq!(body["data"]["status"], "delivered");
    }

    #[test]
    fn a_get_has_no_body_and_basic_auth_wins() {
        let target = Target {
            method: "GET".into(),
            basic_auth: Some("user:pass".into()),
            bearer_token: Some("ignored".into()),
            ..Target::plain("https://h/?e=${event}", "json")
        };
        let c = render(
            "message.status",
            &scope(),
            Kind::Campaign,
            None,
            target,
            true,
            &vars(),
            &json!({}),
        )
        .unwrap();
        assert_eq!(c.url, "https://h/?e=message.status");
        assert_eq!(c.body, None);
        assert_eq!(c.headers, "{}");
        assert_eq!(c.auth_header.as_deref(), Some("Basic dXNlcjpwYXNz"));
        assert!(c.held);
    }

    #[test]
    fn unfillable_urls_and_unknown_formats_are_errors() {
        let missing = Target::plain("https://h/${nope}", "json");
        let error = render("e", &scope(), Kind::List, None, missing, false, &vars(), &json!({})).unwrap_err();
        assert!(matches!(error, RenderError::Template { ref template, .. } if template == "https://h/${nope}"));
        let format = Target::plain("https://h/", "yaml");
        let error = render("e", &scope(), Kind::List, None, format, false, &vars(), &json!({})).unwrap_err();
        assert_eq!(error, RenderError::Format("yaml".into()));
    }

    #[test]
    fn endpoints_are_scheme_host_and_port_without_credentials() {
        assert_eq!(
            endpoint("https://Hooks.Example.com:443/a/b?c#d"),
            "https://hooks.example.com"
        );
        assert_eq!(endpoint("http://127.0.0.1:58080"), "http://127.0.0.1:58080");
        assert_eq!(
            endpoint("https://user:secret@crm.internal:8443/dlr"),
            "https://crm.internal:8443"
        );
        assert_eq!(endpoint("http://[::1]:8080/x"), "http://[::1]:8080");
        assert_eq!(endpoint("http://h?x=1"), "http://h");
        assert_eq!(endpoint("no scheme/at all"), "no scheme");
    }

    #[test]
    fn order_keys_are_per_message_else_per_campaign() {
        let campaign = Scope {
            message_id: None,
            ..scope()
        };
        assert_eq!(order_key(&campaign, "u"), "campaign:2 u");
        let account = Scope {
            campaign_id: None,
            ..campaign
        };
        assert_eq!(order_key(&account, "u"), " u");
    }

    fn rendered(url: &str, order_key: &str, held: bool) -> Callback {
        Callback {
            url: url.into(),
            order_key: order_key.into(),
            held,
            ..render(
                "message.status",
                &scope(),
                Kind::List,
                None,
                Target::plain("http://x", "json"),
                false,
                &vars(),
                &json!({}),
            )
            .unwrap()
        }
    }

    #[test]
    fn a_worker_leases_what_it_renders_due_now_as_far_as_it_has_room() {
        let callbacks = [
            rendered("http://a/1", "m:1 a", false),
            rendered("http://a/2", "m:1 a", false), // behind the first
            rendered("http://a/3", "m:3 a", true),  // held
            rendered("http://b/4", "m:4 b", false),
            rendered("http://a/5", "m:5 a", false), // no room left
        ];
        let placed = place(&callbacks, 2, &[]);
        assert_eq!(placed.behind, [false, true, false, false, false]);
        assert_eq!(placed.leased, [true, false, false, true, false]);
        assert_eq!(place(&callbacks, 0, &[]).leased, [false; 5]);
    }

    #[test]
    fn a_worker_leases_none_of_an_endpoint_it_has_enough_of() {
        let callbacks = [
            rendered("http://a/1", "m:1 a", false),
            rendered("http://B:80/2", "m:2 b", false),
        ];
        let placed = place(&callbacks, 10, &["http://b".to_string()]);
        assert_eq!(placed.leased, [true, false]);
    }
}
