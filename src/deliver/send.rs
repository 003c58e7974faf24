//! Sending: the HTTP request of a claimed callback, signed at the moment it is sent.
//!
//! In: a `Claimed` callback. Out: a request for the HTTP pool (pg_callback_core::http), with
//! `webhook-id`, `webhook-timestamp` and, when it has a secret, `webhook-signature` (with a
//! signature for each secret in its rotation overlap too).

use super::claim::Claimed;
use crate::api::settings as guc;
use pg_callback_core::http::Request;
use pg_callback_core::signing;
use std::time::{SystemTime, UNIX_EPOCH};

/// The request for a claimed callback, signed now when it has a secret.
pub fn request(c: &Claimed) -> Request {
    // The headers column is a JSON object of strings (checked when the target was written).
    let mut headers: Vec<(String, String)> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&c.headers)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| value.as_str().map(|v| (name, v.to_string())))
            .collect();
    if let Some(auth) = &c.auth_header {
        headers.push(("Authorization".into(), auth.clone()));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    headers.push(("webhook-id".into(), c.webhook_id.clone()));
    headers.push(("webhook-timestamp".into(), now.to_string()));
    if let Some(secret) = &c.signing_secret {
        let body = c.body.as_deref().unwrap_or("").as_bytes();
        let secrets: Vec<&str> = std::iter::once(secret)
            .chain(&c.other_secrets)
            .map(String::as_str)
            .collect();
        if let Some(signature) = signing::signature_header(&secrets, &c.webhook_id, now, body) {
            headers.push(("webhook-signature".into(), signature));
        }
    }
    Request {
        key: c.id,
        post: c.post,
        url: c.url.clone(),
        headers,
        body: c.body.clone(),
        timeout: c.timeout,
        excerpt_bytes: guc::RESPONSE_EXCERPT_BYTES.get().max(0) as usize,
        identity: c.identity.clone(),
    }
}
