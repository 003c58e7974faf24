//! pg_callback: delivery-report callbacks recorded in the same transaction as each status
//! change, and delivered over HTTP from inside Postgres.
//!
//! This file is a table of contents: the modules, then the schema's SQL files in the order
//! they run. Modules without pgrx (`template`, `render`, `settings`) hold the logic that
//! needs no database and are unit-tested on their own.

pgrx::pg_module_magic!();

pub mod render;
pub mod settings;
pub mod template;

mod error;
mod sql_functions;

// Types, tables and row checks of the domain model.
pgrx::extension_sql_file!(
    "../sql/model.sql",
    name = "model",
    requires = [sql_functions::check_settings]
);
// Campaigns inherit their list's callback settings.
pgrx::extension_sql_file!("../sql/inheritance.sql", name = "inheritance", requires = ["model"]);
// The account's delivery-status webhook (seed 004) and subscriptions (seed 002).
pgrx::extension_sql_file!("../sql/webhooks.sql", name = "webhooks", requires = ["inheritance"]);
// The callbacks table: every callback recorded, its state, lease and history.
pgrx::extension_sql_file!("../sql/queue.sql", name = "queue", requires = ["webhooks"]);
// Events: the triggers that record callbacks, choosing their targets.
pgrx::extension_sql_file!(
    "../sql/events.sql",
    name = "events",
    requires = ["queue", sql_functions::render_url, sql_functions::render_body],
    finalize
);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
