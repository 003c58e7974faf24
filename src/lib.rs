//! pg_callback: delivery-report callbacks recorded in the same transaction as each status
//! change, and delivered over HTTP from inside Postgres.
//!
//! This file is a table of contents: the folders in the order data flows, what `_PG_init` sets
//! up, then the schema's SQL files in the order they run. What needs no database (events,
//! targets, templates, bodies, signatures, retry schedules, setting checks, the HTTP pool, the
//! destination guard) is in the `pg_callback_core` crate (`core/`), unit-tested on its own.

use pgrx::prelude::*;

pgrx::pg_module_magic!();

/// What SQL sees: functions called directly, the settings, errors and their SQLSTATEs.
mod api;
/// Delivery: the launcher and the workers that claim, send, and write results.
mod deliver;
/// Postgres glue: SPI, shared memory, trigger rows.
mod pg;
/// Recording: an event written in the transaction that caused it.
mod record;
/// Rendering: events into callbacks (targets chosen, URLs filled, bodies made), queued.
mod render;

/// Defines the settings; when preloaded, also the shared memory and the launcher.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a flag Postgres sets while it loads shared_preload_libraries.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    api::settings::define(preloading);
    if preloading {
        pg::shared::init();
        deliver::launcher::register();
    }
}

// Types, tables and row checks of the domain model.
pgrx::extension_sql_file!(
    "../sql/model.sql",
    name = "model",
    requires = [api::functions::check_settings, api::functions::iso]
);
// Campaigns inherit their list's callback settings.
pgrx::extension_sql_file!("../sql/inheritance.sql", name = "inheritance", requires = ["model"]);
// The account's delivery-status webhook (seed 004) and subscriptions (seed 002).
pgrx::extension_sql_file!("../sql/webhooks.sql", name = "webhooks", requires = ["inheritance"]);
// The callbacks: each one's request, the queue, the done ones, and the view of them; history.
pgrx::extension_sql_file!(
    "../sql/queue.sql",
    name = "queue",
    requires = [
        "webhooks",
        api::functions::endpoint,
        api::functions::order_key,
        api::functions::packed_body,
        api::functions::body
    ]
);
// Requests per second per endpoint: the administrator's and the accounts' limits.
pgrx::extension_sql_file!("../sql/limits.sql", name = "limits", requires = ["queue"]);
// Signing-secret rotation: both signatures for an overlap.
pgrx::extension_sql_file!(
    "../sql/secrets.sql",
    name = "secrets",
    requires = ["limits", api::functions::generate_signing_secret]
);
// Client certificates (mutual TLS) per account, list and campaign.
pgrx::extension_sql_file!(
    "../sql/certificates.sql",
    name = "certificates",
    requires = ["secrets", api::functions::check_client_certificate]
);
// Batched reports: which targets batch their events, and the events waiting for their batch.
pgrx::extension_sql_file!("../sql/batching.sql", name = "batching", requires = ["certificates"]);
// Events: the triggers that record them, and what their targets are chosen from.
pgrx::extension_sql_file!(
    "../sql/events.sql",
    name = "events",
    requires = [
        "batching",
        pg::shared::wake_on_commit,
        pg::shared::_settings_changed,
        record::record_event,
        record::messages::_message_record,
        render::expand::expand_events,
        api::functions::message_vars_of
    ]
);
// Disabling and enabling campaigns' callbacks, alerts, replay, history, the campaign report.
pgrx::extension_sql_file!("../sql/delivery.sql", name = "delivery", requires = ["events"]);
// Operating it: the queue, endpoint health, workers and campaigns; sending now, replaying many.
// Alert emails: queued with each alert, sent by the workers.
pgrx::extension_sql_file!("../sql/emails.sql", name = "emails", requires = ["delivery"]);
// Campaign reports uploaded to object storage before campaign.complete goes.
pgrx::extension_sql_file!(
    "../sql/reports.sql",
    name = "reports",
    requires = ["emails", api::functions::report_storage]
);
// Endpoint health: down after repeated failures, probed, reset.
pgrx::extension_sql_file!("../sql/health.sql", name = "health", requires = ["reports"]);
pgrx::extension_sql_file!(
    "../sql/views.sql",
    name = "views",
    requires = ["health", api::functions::worker_stats]
);
// Attaching to an application's own message table.
pgrx::extension_sql_file!(
    "../sql/attach.sql",
    name = "attach",
    requires = ["views", record::attached::_attached_events]
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
