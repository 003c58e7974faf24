//! The Rust functions SQL calls directly: checking settings, generate_signing_secret, and the
//! workers' statistics behind `callback.workers`.
//!
//! Internal (`_`-prefixed) except `generate_signing_secret`; each is a thin wrapper over
//! pg_callback_core or shared memory, raising [`CallbackError`] on bad input.

use super::error::CallbackError;
use crate::pg::shared;
use base64::Engine;
use pg_callback_core::settings;
use pgrx::prelude::*;
use pgrx::JsonB;

/// Raises 22023 naming the first bad setting in `row` (a table row as JSON).
#[pg_extern(immutable, strict, parallel_safe, name = "_check_settings")]
fn check_settings(row: JsonB, require_https: bool) {
    if let Err(e) = settings::check_row(&row.0, require_https) {
        CallbackError::Setting(e).raise();
    }
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
}
