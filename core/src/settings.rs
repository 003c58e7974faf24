//! Checks of callback settings (URLs, headers, credentials, signing secret, environment)
//! before a list, campaign, subscription or webhook row is written.
//!
//! Settings arrive as the row's JSON (`to_jsonb(NEW)`); a key that is absent or null is
//! not checked. No pgrx here: the SQL wrapper turns a [`SettingError`] into SQLSTATE 22023.

use crate::template::{self, MAX_URL_BYTES};
use base64::Engine;
use serde_json::{Map, Value};

/// At most this many custom headers, each value at most this long.
pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// Headers pg_callback sets itself, which a setting may not replace.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "host",
    "transfer-encoding",
    "webhook-id",
    "webhook-signature",
    "webhook-timestamp",
];

/// Which setting is wrong, what is wrong with it, and what to do instead.
#[derive(Debug, PartialEq, Eq)]
pub struct SettingError {
    pub setting: String,
    pub problem: String,
    pub hint: Option<&'static str>,
}

fn bad(setting: &str, problem: impl Into<String>) -> SettingError {
    SettingError {
        setting: setting.to_string(),
        problem: problem.into(),
        hint: None,
    }
}

impl SettingError {
    fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

/// Checks a callback URL template: its `${...}` syntax, and that with every variable
/// filled in it is an absolute http(s) URL with a host, no credentials and no fragment.
/// Variables may stand only in the path and query, never in the scheme or host.
pub fn check_url(setting: &str, url: &str, require_https: bool) -> Result<(), SettingError> {
    if url.len() > MAX_URL_BYTES {
        return Err(bad(
            setting,
            format!("the URL is {} bytes long, over the limit of {MAX_URL_BYTES}", url.len()),
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            bad(setting, "the URL contains white space or control characters").hint("Percent-encode spaces as %20.")
        );
    }
    if !url.is_ascii() {
        return Err(bad(setting, "the URL contains characters outside ASCII").hint(
            "Percent-encode them in the path and query (ü is %C3%BC) and write an international host name in its xn-- form.",
        ));
    }
    let names = template::variables(url).map_err(|e| bad(setting, e.to_string()))?;
    check_authority(setting, url)?;
    let origin_end = url
        .find("://")
        .map(|i| i + 3 + url[i + 3..].find(['/', '?']).unwrap_or(url.len() - i - 3))
        .unwrap_or(url.len());
    if url[..origin_end].contains("${") {
        return Err(bad(setting, "template variables may stand only in the path and query")
            .hint("Write the scheme and host literally, e.g. https://crm.example.com/dlr/${id}."));
    }
    let filled: Map<String, Value> = names.into_iter().map(|n| (n, Value::String("x".into()))).collect();
    let concrete = template::render(url, &filled).map_err(|e| bad(setting, e.to_string()))?;
    let parsed =
        url::Url::parse(&concrete).map_err(|e| bad(setting, format!("\"{url}\" is not a valid absolute URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if !require_https => {}
        "http" => {
            return Err(bad(setting, format!("\"{url}\" must use https"))
                .hint("Callback URLs for this setting must use HTTPS."))
        }
        other => return Err(bad(setting, format!("scheme \"{other}\" is not http or https"))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad(setting, format!("\"{url}\" has no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(setting, "the URL carries credentials")
            .hint("Use callback_basic_auth or callback_bearer_token instead of user:password@ in the URL."));
    }
    if parsed.fragment().is_some() {
        return Err(bad(
            setting,
            "the URL has a #fragment, which is never sent to the server",
        ));
    }
    Ok(())
}

/// Checks the URL's authority as written, before a lenient parser reads it: `http:///x` parses
/// as host `x`, `https:///127.0.0.1:8443/dlr` as host 127.0.0.1, and a backslash ends the host
/// where a receiver would not. What is written between `//` and the path must be a host (with
/// its port), nothing else.
fn check_authority(setting: &str, url: &str) -> Result<(), SettingError> {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return Ok(()); // not absolute: the parse below says so
    };
    let scheme = &url[..start - 3];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Ok(()); // refused for its scheme below
    }
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let no_host = |why: &str| {
        Err(bad(setting, format!("\"{url}\" has no host: {why}"))
            .hint("Write the host right after the scheme, e.g. https://crm.example.com:8443/dlr."))
    };
    if authority.is_empty() {
        return no_host("nothing stands between // and the path");
    }
    if authority.starts_with(':') {
        return no_host("a port stands where the host should");
    }
    if authority.contains('\\') {
        return Err(bad(setting, "the URL's host part contains a backslash"));
    }
    if authority.contains('@') {
        return Err(bad(setting, "the URL carries credentials")
            .hint("Use callback_basic_auth or callback_bearer_token instead of user:password@ in the URL."));
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Custom headers: a JSON object of header name to string value.
pub fn check_headers(setting: &str, headers: &Value) -> Result<(), SettingError> {
    let map = headers
        .as_object()
        .ok_or_else(|| bad(setting, "headers must be a JSON object of name to value"))?;
    if map.len() > MAX_HEADERS {
        return Err(bad(
            setting,
            format!("{} headers given, at most {MAX_HEADERS} are allowed", map.len()),
        ));
    }
    for (name, value) in map {
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(bad(setting, format!("\"{name}\" is not a valid header name")));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(bad(setting, format!("header \"{name}\" is set by pg_callback itself"))
                .hint("Use callback_basic_auth or callback_bearer_token for credentials, callback_format for the content type."));
        }
        let value = value
            .as_str()
            .ok_or_else(|| bad(setting, format!("the value of header \"{name}\" must be a string")))?;
        if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
            return Err(bad(
                setting,
                format!("the value of header \"{name}\" contains CR, LF or NUL"),
            ));
        }
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(bad(
                setting,
                format!("the value of header \"{name}\" is over {MAX_HEADER_VALUE_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

fn check_credential(setting: &str, value: &str) -> Result<(), SettingError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(bad(setting, "the credential is empty or contains control characters"));
    }
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(bad(
            setting,
            format!("the credential is over {MAX_HEADER_VALUE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random bytes.
pub fn check_signing_secret(setting: &str, secret: &str) -> Result<(), SettingError> {
    let hint = "Make one with callback.generate_signing_secret().";
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or_else(|| bad(setting, "a signing secret starts with \"whsec_\"").hint(hint))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad(setting, "the part after \"whsec_\" is not valid base64").hint(hint))?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(bad(
            setting,
            format!("the secret holds {} bytes, it must hold 24 to 64", bytes.len()),
        )
        .hint(hint));
    }
    Ok(())
}

/// Campaign environment variables: an object of template names to scalar values.
pub fn check_env(setting: &str, env: &Value) -> Result<(), SettingError> {
    let map = env
        .as_object()
        .ok_or_else(|| bad(setting, "environment variables must be a JSON object"))?;
    for (name, value) in map {
        if template::variables(&format!("${{{name}}}")).is_err() {
            return Err(bad(setting, format!("\"{name}\" is not a valid variable name"))
                .hint("Use letters, digits, _, - and ."));
        }
        if !(value.is_string() || value.is_number() || value.is_boolean()) {
            return Err(bad(
                setting,
                format!("variable \"{name}\" must be a string, number or boolean"),
            ));
        }
    }
    Ok(())
}

/// Every setting present in `row`. `require_https` applies to the callback URLs.
pub fn check_row(row: &Value, require_https: bool) -> Result<(), SettingError> {
    let text = |key: &str| row.get(key).and_then(Value::as_str);
    for key in ["callback_url", "alert_url", "notify_url", "url"] {
        if let Some(url) = text(key) {
            check_url(key, url, require_https)?;
        }
    }
    if let Some(urls) = row.get("event_urls").filter(|v| !v.is_null()) {
        let map = urls
            .as_object()
            .ok_or_else(|| bad("event_urls", "must be a JSON object of event type to URL"))?;
        for (event, url) in map {
            let url = url
                .as_str()
                .ok_or_else(|| bad("event_urls", format!("the URL for \"{event}\" must be a string")))?;
            check_url(&format!("event_urls.{event}"), url, require_https)?;
        }
    }
    if let Some(headers) = row.get("callback_headers").filter(|v| !v.is_null()) {
        check_headers("callback_headers", headers)?;
    }
    if let Some(basic) = text("callback_basic_auth") {
        check_credential("callback_basic_auth", basic)?;
        match basic.split_once(':') {
            Some((user, _)) if !user.is_empty() => {}
            _ => {
                return Err(bad(
                    "callback_basic_auth",
                    "basic credentials are written \"user:password\"",
                ))
            }
        }
    }
    if let Some(token) = text("callback_bearer_token") {
        check_credential("callback_bearer_token", token)?;
        if token.contains(' ') {
            return Err(bad("callback_bearer_token", "a bearer token contains no spaces"));
        }
        if text("callback_basic_auth").is_some() {
            return Err(bad(
                "callback_bearer_token",
                "basic auth and a bearer token cannot both be set",
            )
            .hint("Set one of callback_basic_auth and callback_bearer_token to NULL."));
        }
    }
    if let Some(secret) = text("signing_secret") {
        check_signing_secret("signing_secret", secret)?;
    }
    if let Some(env) = row.get("env").filter(|v| !v.is_null()) {
        check_env("env", env)?;
    }
    if let Some(people) = row.get("notification_list").and_then(Value::as_array) {
        for person in people {
            let p = person.as_str().unwrap_or("");
            let valid = p.split_once('@').is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
                && !p.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                return Err(bad("notification_list", format!("\"{p}\" is not an email address")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(r: Result<(), SettingError>) -> String {
        r.unwrap_err().problem
    }

    #[test]
    fn good_urls_pass() {
        for url in [
            "https://crm.example.com/dlr",
            "http://127.0.0.1:8080/hook?x=1",
            "https://apps.example.edu/mail/notification123/${studentId}?s=${status}",
            "https://[::1]:8443/a",
        ] {
            assert_eq!(check_url("callback_url", url, false), Ok(()), "{url}");
        }
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        let cases = [
            ("not a url", "white space"),
            ("crm.example.com/dlr", "not a valid absolute URL"),
            ("ftp://example.com/x", "scheme \"ftp\""),
            ("https://u:p@example.com/", "carries credentials"),
            ("https://example.com/#top", "fragment"),
            ("https://${host}/x", "only in the path and query"),
            ("https://example.com/${id", "no closing"),
            ("https://example.com/${a b}", "white space"),
            ("https://example.com/${}", "not a valid variable name"),
            ("file:///etc/passwd", "scheme \"file\""),
            ("https://example.com/bücher", "outside ASCII"),
            ("https://bücher.example/", "outside ASCII"),
            ("http:///x", "has no host: nothing stands between"),
            ("https:///127.0.0.1:8443/dlr", "has no host: nothing stands between"),
            ("http://:80/", "has no host: a port stands where the host should"),
            ("https://good.example@evil.example/", "carries credentials"),
            ("https://@evil.example/", "carries credentials"),
            ("https://good.example\\@evil.example/", "backslash"),
            ("https://evil.example\\.good.example/", "backslash"),
            ("http://?x=1", "has no host"),
        ];
        for (url, expected) in cases {
            let p = problem(check_url("callback_url", url, false));
            assert!(p.contains(expected), "{url}: {p}");
        }
        assert!(
            problem(check_url("u", &format!("https://e.com/{}", "a".repeat(3000)), false)).contains("over the limit")
        );
    }

    #[test]
    fn https_is_enforced_when_required() {
        assert!(problem(check_url("url", "http://example.com/x", true)).contains("must use https"));
        assert_eq!(check_url("url", "https://example.com/x", true), Ok(()));
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(
            check_headers("h", &json!({"X-Api-Key": "abc", "X-Tenant": "7"})),
            Ok(())
        );
        assert!(problem(check_headers("h", &json!(["a"]))).contains("JSON object"));
        assert!(problem(check_headers("h", &json!({"Bad Name": "x"}))).contains("not a valid header name"));
        assert!(problem(check_headers("h", &json!({"X-A": "a\r\nInjected: 1"}))).contains("CR, LF"));
        assert!(problem(check_headers("h", &json!({"X-A": 1}))).contains("must be a string"));
        assert!(problem(check_headers("h", &json!({"Authorization": "x"}))).contains("set by pg_callback"));
        assert!(problem(check_headers("h", &json!({"webhook-signature": "x"}))).contains("set by pg_callback"));
    }

    #[test]
    fn signing_secrets_follow_standard_webhooks() {
        assert_eq!(
            check_signing_secret("s", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Ok(())
        );
        assert!(problem(check_signing_secret("s", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).contains("starts with"));
        assert!(problem(check_signing_secret("s", "whsec_!!!")).contains("base64"));
        assert!(problem(check_signing_secret("s", "whsec_c2hvcnQ=")).contains("holds 5 bytes"));
    }

    #[test]
    fn rows_are_checked_setting_by_setting() {
        let ok = json!({
            "callback_url": "https://crm.example.com/dlr/${id}",
            "alert_url": null,
            "event_urls": {"message.final": "https://crm.example.com/final"},
            "callback_headers": {"X-Key": "k"},
            "callback_basic_auth": "crm:secret",
            "env": {"region": "eu", "tier": 2},
            "notification_list": ["ops@example.com"]
        });
        assert_eq!(check_row(&ok, false), Ok(()));

        let cases = [
            (
                json!({"event_urls": {"message.final": "nope"}}),
                "event_urls.message.final",
            ),
            (json!({"event_urls": {"message.final": 3}}), "event_urls"),
            (json!({"callback_basic_auth": "nocolon"}), "callback_basic_auth"),
            (
                json!({"callback_basic_auth": "a:b", "callback_bearer_token": "t"}),
                "callback_bearer_token",
            ),
            (json!({"callback_bearer_token": "two words"}), "callback_bearer_token"),
            (json!({"env": {"a": {"nested": 1}}}), "env"),
            (json!({"env": {"bad name": 1}}), "env"),
            (json!({"notification_list": ["not-an-address"]}), "notification_list"),
            (json!({"alert_url": "http://x"}), "alert_url"),
        ];
        for (row, setting) in cases {
            let err = check_row(&row, true).unwrap_err();
            assert_eq!(err.setting, setting, "{row}");
        }
    }
}
