//! pg_callback's core: everything the extension does that needs no Postgres, so that it is
//! plain Rust, unit-tested with `cargo test -p pg_callback_core` and no cluster. No pgrx type
//! crosses into this crate; the extension (`src/`) reads rows into these types and writes
//! what they produce back.
//!
//! In the order data flows:

// Events and what a status change means; where each event goes; a callback rendered from them.
pub mod callback;
pub mod event;
pub mod target;
// What rendering fills in: URL templates, request bodies (and batches of them, and how they
// are stored), times.
pub mod batch;
pub mod body;
pub mod packed;
pub mod template;
pub mod time;
pub mod webhook_id;
// Checks of what users write: URLs, headers, credentials, secrets, environments.
pub mod settings;
// Delivery: which callback to send next, the HTTP pool, what TLS trusts, where requests may
// go, signatures, retry schedules and what an answer means, endpoints' health, where claims read
// the queue; alert emails; campaign reports in object storage.
pub mod destinations;
pub mod dispatch;
pub mod health;
pub mod http;
pub mod mail;
pub mod names;
pub mod report;
pub mod retry;
pub mod scan;
pub mod signing;
pub mod threads;
pub mod tls;
