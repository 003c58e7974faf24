//! Recording: an event written in the transaction that caused it. Every status change of a
//! message runs here, in the application's transaction, so this is the cost pg_callback adds
//! to it.
//!
//! In: status changes of `callback.messages` (messages.rs) and of tables attached with
//! `callback.attach()` (attached.rs), and every other event from the PL/pgSQL triggers of
//! sql/events.sql through `callback._record_event`. Out: with `pg_callback.recording =
//! deferred` (the default) one row of `callback.events` (event_row.rs) and the workers woken
//! at commit to render it; with `immediate`, its callbacks rendered now (src/render/).
//! SQL: sql/events.sql (the triggers), sql/record/account_of.sql.

pub mod attached;
mod event_row;
pub mod messages;

use crate::api::error::CallbackError;
use crate::api::settings::{Recording, RECORDING};
use crate::pg::{shared, spi};
use crate::render::{self, Rendering};
use pg_callback_core::event::{Event, Message, Other, StatusChange};
use pgrx::prelude::*;
use pgrx::JsonB;

/// Whether events are stored for the workers to render (pg_callback.recording = deferred).
/// Until `ALTER EXTENSION pg_callback UPDATE` adds `callback.events` to a schema of 0.1.0,
/// this library renders immediately there.
fn deferring() -> bool {
    RECORDING.get() == Recording::Deferred && spi::events_table() != pg_sys::InvalidOid
}

/// Stores an event in `callback.events` and wakes the workers at commit, who render it.
fn store(event: &Event) {
    event_row::insert(event);
    shared::events_on_commit();
}

/// A status change of a message of `callback.messages` (`previous` None: inserted), for the
/// trigger of messages.rs: refuses a status not in `callback.statuses` and records what the
/// change means, with `message` read only when something is recorded. Its statements run as
/// the owner of `function`, with no say for the caller's search_path (`spi::as_owner`), as
/// SECURITY DEFINER would run them; storing an event for later with the statuses cached, the
/// usual case with pg_callback.recording = deferred, runs none, and the change needs no
/// definer's setup.
pub fn message_status(
    function: pg_sys::Oid,
    status: &str,
    previous: Option<&str>,
    notify: bool,
    intermediate: bool,
    message: impl FnOnce() -> Message,
) {
    // What the change means, from the statuses: None when it records nothing.
    let means = |statuses: &pg_callback_core::event::Statuses| {
        if !statuses.contains_key(status) {
            CallbackError::UnknownStatus(status.to_string()).raise();
        }
        let change = StatusChange::of(statuses, status, previous);
        (notify && change.records_any(intermediate)).then_some(change)
    };
    if deferring() {
        if let Some(change) = render::cached(|cache| means(&cache.statuses)) {
            if change.is_some() {
                store(&Event::Status(message()));
            }
            return;
        }
    }
    spi::as_owner(function, || {
        render::connected(
            "recording the status of a message",
            |client, plans, cache| match means(&cache.statuses) {
                Some(change) => message_changed(client, plans, cache, message(), change),
                None => Ok(()),
            },
        )
    });
}

/// A status change of `m` that records something (`change`): stored for later with
/// pg_callback.recording = deferred, its callbacks rendered now with immediate.
fn message_changed(
    client: &mut pgrx::spi::SpiClient<'_>,
    plans: &render::Plans,
    cache: &mut render::Cache,
    m: Message,
    change: StatusChange,
) -> pgrx::spi::SpiResult<()> {
    if deferring() {
        store(&Event::Status(m));
        return Ok(());
    }
    spi::with_generic_plans(|| render::message(client, plans, cache, &m, &change, &mut Rendering::now()))
}

/// Records an event for the PL/pgSQL triggers (through `callback._record`). `list_id`: the
/// list of a message outside campaigns (its member's).
#[pg_extern(volatile, parallel_unsafe, name = "_record_event")]
#[allow(clippy::too_many_arguments)]
fn record_event(
    event: &str,
    account_id: i64,
    campaign_id: Option<i64>,
    message_id: Option<i64>,
    list_id: Option<i64>,
    channel: Option<&str>,
    notify_url: Option<&str>,
    notify_format: Option<&str>,
    vars: JsonB,
    data: JsonB,
) {
    let other = Other {
        event: event.to_string(),
        account_id,
        campaign_id,
        message_id,
        list_id,
        channel: channel.map(str::to_string),
        notify_url: notify_url.map(str::to_string),
        notify_format: notify_format.map(str::to_string),
        vars: vars.0,
        data: data.0,
    };
    if deferring() {
        store(&Event::Other(other));
        return;
    }
    render::connected(format_args!("recording {event}"), |client, plans, cache| {
        spi::with_generic_plans(|| render::other(client, plans, cache, &other, &mut Rendering::now()))
    });
}
