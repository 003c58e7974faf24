//! The Rust functions SQL calls directly: checking settings and client certificates,
//! generate_signing_secret, the workers' statistics behind `callback.workers`, and the one
//! home of what SQL shares with rendering: endpoints, order keys, timestamps in bodies, bodies
//! as they are stored, the template variables of a message's events.
//!
//! Internal (`_`-prefixed) except `generate_signing_secret`; each is a thin wrapper over
//! pg_callback_core or shared memory, raising [`CallbackError`] on bad input.

use super::error::CallbackError;
use crate::pg::shared;
use base64::Engine;
use pg_callback_core::event::Message;
use pg_callback_core::settings::SettingError;
use pg_callback_core::{callback, packed, settings, time};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

/// Raises 22023 naming the first bad setting in `row` (a table row as JSON).
#[pg_extern(immutable, strict, parallel_safe, name = "_check_settings")]
fn check_settings(row: JsonB, require_https: bool) {
    if let Err(e) = settings::check_row(&row.0, require_https) {
        CallbackError::Setting(e).raise();
    }
}

/// Raises 22023 saying what is wrong when `certificate` (PEM, with any intermediates) and
/// `private_key` (PEM) cannot be a client certificate: unreadable, or not a pair.
#[pg_extern(immutable, strict, parallel_safe, name = "_check_client_certificate")]
fn check_client_certificate(certificate: &str, private_key: &str) {
    if let Err(problem) = pg_callback_core::tls::client_certificate(certificate, private_key) {
        CallbackError::Setting(SettingError {
            setting: "client certificate".into(),
            problem,
            hint: Some("Give the certificate and its unencrypted private key, both PEM."),
        })
        .raise();
    }
}

/// Whether campaign reports go to object storage (pg_callback.report_bucket is set): then
/// campaign.complete waits for the report's upload (sql/reports.sql).
#[pg_extern(stable, parallel_safe, name = "_report_storage")]
fn report_storage() -> bool {
    crate::api::settings::storage().is_some()
}

/// A new Standard Webhooks signing secret: `whsec_` and 32 random bytes in base64.
#[pg_extern(volatile, parallel_safe)]
fn generate_signing_secret() -> String {
    let mut bytes = [0u8; 32];
    // SAFETY: the buffer is ours and its length is passed with it.
    let ok = unsafe { pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) };
    if !ok {
        error!("could not generate random bytes for a signing secret");
    }
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The endpoint (scheme, host and port) of a URL, as rendering stores it on each callback.
#[pg_extern(immutable, strict, parallel_safe, name = "_endpoint")]
fn endpoint(url: &str) -> String {
    callback::endpoint(url)
}

/// The order key of a callback of one event (pg_callback_core::callback::order_key_of), which
/// `callback.requests` does not store.
#[pg_extern(immutable, parallel_safe, name = "_order_key")]
fn order_key(message_id: Option<i64>, campaign_id: Option<i64>, url: &str) -> String {
    callback::order_key_of(message_id, campaign_id, url)
}

/// A body as `callback.requests` stores it: compressed (pg_callback_core::packed).
#[pg_extern(immutable, strict, parallel_safe, name = "_packed_body")]
fn packed_body(body: &str) -> Vec<u8> {
    packed::pack(body)
}

/// The body `callback._packed_body` stored, as it is sent; raises XX001 for bytes it did not
/// make.
#[pg_extern(immutable, strict, parallel_safe, name = "_body")]
fn body(stored: &[u8]) -> String {
    packed::unpack(stored).unwrap_or_else(|e| CallbackError::Unreadable(e).raise())
}

/// A time as bodies carry it: ISO 8601 in UTC with microseconds, whatever the session's
/// TimeZone; NULL for infinity.
#[pg_extern(immutable, strict, parallel_safe, name = "_iso")]
fn iso(ts: TimestampWithTimeZone) -> Option<String> {
    let at: pg_sys::TimestampTz = ts.into();
    Some(time::iso_of_postgres(at)).filter(|text| !text.is_empty())
}

/// The template variables of a message's events (`callback._message_vars` for the PL/pgSQL
/// triggers): the message as JSON, its member's attributes, its campaign's env and its list.
#[pg_extern(immutable, parallel_safe, name = "_message_vars_of")]
fn message_vars_of(message: JsonB, attributes: Option<JsonB>, env: Option<JsonB>, list_id: Option<i64>) -> JsonB {
    let m = &message.0;
    let number = |key: &str| m.get(key).and_then(Value::as_i64);
    let text = |key: &str| m.get(key).and_then(Value::as_str).map(str::to_string);
    let message = Message {
        id: number("id").unwrap_or_default(),
        account_id: number("account_id").unwrap_or_default(),
        campaign_id: number("campaign_id"),
        member_id: number("member_id"),
        batch_id: text("batch_id"),
        channel: text("channel"),
        destination: text("destination"),
        status: text("status").unwrap_or_default(),
        ..Message::default()
    };
    let object = |json: Option<JsonB>| match json.map(|j| j.0) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    JsonB(Value::Object(message.vars(object(attributes), &object(env), list_id)))
}

/// The statistics of every worker slot that has been used since the server started
/// (`callback.workers`); none when the library is not preloaded. Times in Unix milliseconds.
#[pg_extern(volatile, parallel_safe, name = "_worker_stats")]
#[allow(clippy::type_complexity)]
fn worker_stats() -> TableIterator<
    'static,
    (
        name!(slot, i32),
        name!(pid, i32),
        name!(running, bool),
        name!(started_ms, i64),
        name!(in_flight, i32),
        name!(delivered, i64),
        name!(retried, i64),
        name!(failed, i64),
        name!(last_claim_ms, Option<i64>),
        name!(last_claim_size, Option<i32>),
        name!(last_write_ms, Option<i64>),
    ),
> {
    TableIterator::new(shared::worker_stats())
}

/// The functions as SQL calls them, inside a real Postgres.
#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn generated_signing_secrets_pass_the_check() {
        let secret = Spi::get_one::<String>("SELECT callback.generate_signing_secret()")
            .unwrap()
            .unwrap();
        assert!(secret.starts_with("whsec_"));
        Spi::run(&format!(
            "SELECT callback._check_settings('{{\"signing_secret\": \"{secret}\"}}', false)"
        ))
        .unwrap();
    }

    #[pg_test]
    fn iso_writes_what_to_char_in_utc_writes_whatever_the_time_zone() {
        Spi::run("SET TimeZone = 'Asia/Kolkata'").unwrap();
        let same = Spi::get_one::<bool>(
            "SELECT bool_and(callback._iso(t) = to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
             FROM unnest(ARRAY['2026-01-15 09:05:47.000123+05:30', '1999-12-31 23:59:59.999999+00',
                               now()]::timestamptz[]) t",
        );
        assert_eq!(same, Ok(Some(true)));
        let infinite = Spi::get_one::<String>("SELECT callback._iso('infinity')");
        assert_eq!(infinite, Ok(None));
    }

    #[pg_test]
    fn message_variables_are_what_the_sql_of_0_2_0_built() {
        // 0.2.0's callback._message_vars, written out: attributes, then env, then the
        // built-ins without NULLs.
        let same = Spi::get_one::<bool>(
            "WITH m(id, account_id, campaign_id, member_id, batch_id, status, channel, destination) AS (
                 VALUES (7::bigint, 1::bigint, 3::bigint, NULL::bigint, 'b-1', 'delivered', 'sms', '+1555'))
             SELECT callback._message_vars_of(to_jsonb(m), '{\"name\": \"Ann\", \"status\": \"x\"}',
                                               '{\"name\": \"env\"}', 9)
                  = '{\"name\": \"Ann\", \"status\": \"x\"}'::jsonb || '{\"name\": \"env\"}'::jsonb
                    || jsonb_strip_nulls(jsonb_build_object(
                           'id', m.id, 'messageId', m.id, 'memberId', m.member_id, 'campaignId', m.campaign_id,
                           'communicationId', m.campaign_id, 'listId', 9, 'accountId', m.account_id,
                           'batchId', m.batch_id, 'status', m.status, 'channel', m.channel,
                           'destination', m.destination))
             FROM m",
        );
        assert_eq!(same, Ok(Some(true)));
    }

    #[pg_test]
    fn endpoints_are_computed_once_when_a_callback_is_rendered() {
        Spi::run(
            "SET pg_callback.recording = immediate;
             INSERT INTO callback.accounts (name) VALUES ('acme');
             INSERT INTO callback.lists (account_id, name, callback_url)
             VALUES (1, 'l', 'https://Hooks.Example.com:443/dlr/${id}');
             INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'c');
             INSERT INTO callback.messages (campaign_id, channel, destination, status)
             VALUES (1, 'sms', '+1555', 'delivered')",
        )
        .unwrap();
        let endpoint = Spi::get_one::<String>("SELECT endpoint FROM callback.callbacks");
        assert_eq!(endpoint, Ok(Some("https://hooks.example.com".to_string())));
    }
}
