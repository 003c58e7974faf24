//! The one error type of pg_callback's SQL functions; each kind has its SQLSTATE.
//!
//! Messages are lowercase fragments, details and hints full sentences (pg_cron's style).

use pg_callback_core::settings::SettingError;
use pg_callback_core::template::TemplateError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub enum CallbackError {
    /// A callback setting failed its check: 22023 invalid_parameter_value.
    Setting(SettingError),
    /// A URL template could not be filled for an event: 22023 invalid_parameter_value.
    Template { template: String, error: TemplateError },
    /// An unknown body format: 22023 invalid_parameter_value.
    Format(String),
    /// A message's status that is not in callback.statuses: 23503 foreign_key_violation.
    UnknownStatus(String),
    /// A stored body that cannot be read (src/api/functions.rs, `_body`): XX001 data_corrupted.
    Unreadable(pg_callback_core::packed::Unreadable),
}

impl CallbackError {
    fn into_report(self) -> ErrorReport {
        let code = PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE;
        match self {
            CallbackError::Setting(e) => {
                let report = ErrorReport::new(code, format!("invalid {}", e.setting), "pg_callback")
                    .set_detail(sentence(&e.problem));
                match e.hint {
                    Some(hint) => report.set_hint(hint),
                    None => report,
                }
            }
            CallbackError::Template { template, error } => {
                let report = ErrorReport::new(
                    code,
                    format!("cannot fill callback URL template: {error}"),
                    "pg_callback",
                )
                .set_detail(format!("The template is \"{template}\"."));
                match error {
                    TemplateError::Unknown { .. } => report.set_hint(
                        "Template variables are member attributes, campaign env variables and the built-ins listed in the README.",
                    ),
                    _ => report,
                }
            }
            CallbackError::Format(name) => {
                ErrorReport::new(code, format!("unknown body format \"{name}\""), "pg_callback")
                    .set_hint("Use json, xml or form.")
            }
            CallbackError::UnknownStatus(status) => ErrorReport::new(
                PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
                format!("status \"{status}\" is not in callback.statuses"),
                "pg_callback",
            )
            .set_hint("Use one of the statuses in callback.statuses, or add it there first."),
            CallbackError::Unreadable(e) => {
                ErrorReport::new(PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, e.to_string(), "pg_callback")
                    .set_hint("callback.requests.body holds what callback._packed_body() makes, and only that.")
            }
        }
    }

    /// The message and detail, for an error recorded rather than raised.
    pub fn text(self) -> String {
        let report = self.into_report();
        match report.detail() {
            Some(detail) => format!("{}: {detail}", report.message()),
            None => report.message().to_string(),
        }
    }

    /// Raises the error in Postgres; the statement and everything it wrote is rolled back.
    pub fn raise(self) -> ! {
        self.into_report().report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

/// `problem` as a sentence: capitalised, ending in a full stop.
fn sentence(problem: &str) -> String {
    let mut chars = problem.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}
