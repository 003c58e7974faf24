//! pg_callback: delivery-report callbacks recorded in the same transaction as each status
//! change, and delivered over HTTP from inside Postgres.
//!
//! This file is a table of contents: the modules, what `_PG_init` sets up, then the schema's
//! SQL files in the order they run. Modules without pgrx (`template`, `render`, `settings`,
//! `retry`, `signing`, `http`, `dispatch`, `destinations`) hold the logic that needs no
//! database and are unit-tested on their own.

use pgrx::prelude::*;

pgrx::pg_module_magic!();

// No pgrx: URL templates, bodies, setting checks, retry schedules, signatures, the HTTP pool,
// which callback to send next, where callbacks may be sent.
pub mod destinations;
pub mod dispatch;
pub mod http;
pub mod render;
pub mod retry;
pub mod settings;
pub mod signing;
pub mod template;

// Inside Postgres: errors, SQL-callable functions, settings, shared memory, recording and its
// triggers, the processes.
mod error;
mod event_row;
mod guc;
mod launcher;
mod plans;
mod record;
mod shared;
mod sql_functions;
mod triggers;
mod worker;

/// Defines the settings; when preloaded, also the shared memory and the launcher.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a flag Postgres sets while it loads shared_preload_libraries.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    guc::define(preloading);
    if preloading {
        shared::init();
        launcher::register();
    }
}

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
    requires = [
        "queue",
        shared::wake_on_commit,
        shared::_settings_changed,
        record::record_event,
        triggers::_message_record,
        record::expand_events
    ]
);
// Disabling and enabling campaigns' callbacks, alerts, replay, history, the campaign report.
pgrx::extension_sql_file!("../sql/delivery.sql", name = "delivery", requires = ["events"]);
// Operating it: the queue, endpoint health, workers and campaigns; sending now, replaying many.
pgrx::extension_sql_file!(
    "../sql/views.sql",
    name = "views",
    requires = ["delivery", shared::worker_stats]
);
// Attaching to an application's own message table.
pgrx::extension_sql_file!(
    "../sql/attach.sql",
    name = "attach",
    requires = ["views", record::_attached_events]
);
// What pg_dump keeps of the extension's tables.
pgrx::extension_sql_file!("../sql/dump.sql", name = "dump", requires = ["attach"]);
// Tenants: row-level security per account, credentials write-only, the privileges of roles.
pgrx::extension_sql_file!("../sql/tenants.sql", name = "tenants", requires = ["dump"], finalize);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
