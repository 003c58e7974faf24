//! The Rust functions the SQL schema calls: setting checks, URL templates, body rendering.
//!
//! Internal (`_`-prefixed) except `generate_signing_secret`; each is a thin wrapper over a
//! pgrx-free module, raising [`CallbackError`] on bad input.

use crate::error::CallbackError;
use crate::{render, settings, template};
use base64::Engine;
use pgrx::prelude::*;
use pgrx::JsonB;

/// Raises 22023 naming the first bad setting in `row` (a table row as JSON).
#[pg_extern(immutable, strict, parallel_safe, name = "_check_settings")]
fn check_settings(row: JsonB, require_https: bool) {
    if let Err(e) = settings::check_row(&row.0, require_https) {
        CallbackError::Setting(e).raise();
    }
}

/// The URL template with its `${...}` variables filled from `vars`, values percent-encoded.
#[pg_extern(immutable, strict, parallel_safe, name = "_render_url")]
fn render_url(template: &str, vars: JsonB) -> String {
    let empty = serde_json::Map::new();
    let vars = vars.0.as_object().unwrap_or(&empty);
    template::render(template, vars).unwrap_or_else(|error| {
        CallbackError::Template {
            template: template.to_string(),
            error,
        }
        .raise()
    })
}

/// The event envelope rendered as a request body in `format` (json, xml or form).
#[pg_extern(immutable, strict, parallel_safe, name = "_render_body")]
fn render_body(format: &str, envelope: JsonB) -> String {
    let format = render::Format::parse(format).unwrap_or_else(|| CallbackError::Format(format.to_string()).raise());
    render::render(format, &envelope.0)
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

/// The functions as SQL calls them, inside a real Postgres.
#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn render_url_fills_and_encodes() {
        let url = Spi::get_one::<String>(
            "SELECT callback._render_url('https://h/${id}/${name}', '{\"id\": 7, \"name\": \"a b/c\"}')",
        );
        assert_eq!(url, Ok(Some("https://h/7/a%20b%2Fc".to_string())));
    }

    #[pg_test]
    #[should_panic(expected = "template variable \"missing\" has no value")]
    fn render_url_refuses_unknown_variables() {
        Spi::run("SELECT callback._render_url('https://h/${missing}', '{}')").unwrap();
    }

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
