//! The row triggers on `callback.messages`: what a change of a message means is worked out
//! here, from the row read by attribute number, and recorded (src/record/mod.rs).
//!
//! Every status change of every message runs `_message_record`, so it is kept to one BEFORE
//! UPDATE trigger that also sets `updated_at`: an AFTER trigger would cost each change a place
//! in the after-trigger queue, the row fetched again at the end of the statement, and its WHEN
//! clause rebuilt for every statement (about a fifth of what recording cost, measured with
//! callgrind: BENCHMARKS.md). Its name sorts after `messages_derive`, so it sees the account
//! that trigger fills in, and a BEFORE trigger of yours that changes the status should sort
//! before it (README, "Your own triggers"). Inserts are recorded by the same function AFTER
//! INSERT: a BEFORE INSERT trigger fires for the row an INSERT ... ON CONFLICT DO UPDATE then
//! does not insert.

use crate::pg::row::{number, Column, Row};
use pg_callback_core::event::Message;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;

macro_rules! columns {
    ($($name:ident),* $(,)?) => {
        /// The columns of `callback.messages` recording reads, by attribute number: looked up
        /// once per table and number of attributes (a column added changes the count; one
        /// dropped reads as NULL).
        #[derive(Clone, Copy)]
        struct Columns {
            relid: pg_sys::Oid,
            natts: i32,
            $($name: Column,)*
        }

        impl Columns {
            /// # Safety
            /// `desc` is the open relation `relid`'s descriptor.
            unsafe fn look_up(relid: pg_sys::Oid, desc: pg_sys::TupleDesc) -> Columns {
                Columns {
                    relid,
                    // SAFETY: as the caller promises.
                    natts: unsafe { (*desc).natts },
                    // SAFETY: as above.
                    $($name: unsafe { number(desc, stringify!($name)) },)*
                }
            }
        }
    };
}

columns!(
    id,
    account_id,
    campaign_id,
    member_id,
    batch_id,
    channel,
    destination,
    status,
    error_code,
    error_message,
    notify,
    notify_url,
    notify_content_type,
    intermediate_reports,
    callback_data,
    created_at,
    updated_at,
);

thread_local! {
    static COLUMNS: Cell<Option<Columns>> = const { Cell::new(None) };
}

/// The columns of the trigger's table, from the last lookup when it is still good.
fn columns(data: &pg_sys::TriggerData) -> Columns {
    // SAFETY: a row trigger's relation is open while it runs.
    let (relid, desc) = unsafe { ((*data.tg_relation).rd_id, (*data.tg_relation).rd_att) };
    // SAFETY: as above.
    let natts = unsafe { (*desc).natts };
    match COLUMNS.get() {
        Some(known) if known.relid == relid && known.natts == natts => known,
        _ => {
            // SAFETY: as above.
            let found = unsafe { Columns::look_up(relid, desc) };
            COLUMNS.set(Some(found));
            found
        }
    }
}

/// The message a row of `callback.messages` holds, changing from status `previous`.
fn message(row: &Row, c: &Columns, status: String, previous: Option<String>, intermediate: bool) -> Message {
    Message {
        // Both NOT NULL: an id is generated and an account derived before this runs.
        id: row
            .int(c.id)
            .unwrap_or_else(|| error!("pg_callback: a message has no id")),
        account_id: row
            .int(c.account_id)
            .unwrap_or_else(|| error!("pg_callback: a message has no account")),
        campaign_id: row.int(c.campaign_id),
        list_id: None,
        member_id: row.int(c.member_id),
        batch_id: row.string(c.batch_id),
        channel: row.label(c.channel),
        destination: row.string(c.destination),
        status,
        previous,
        error_code: row.string(c.error_code),
        error_message: row.string(c.error_message),
        callback_data: row.string(c.callback_data),
        notify_url: row.string(c.notify_url),
        notify_format: row.label(c.notify_content_type),
        created_at: row.timestamp(c.created_at),
        status_at: row.timestamp(c.updated_at),
        intermediate,
        has_attempts: true,
        attempt_ids: None,
    }
}

/// Records what a change of `row` from `old` (None: inserted) means, when its status changed.
fn record_change(data: &pg_sys::TriggerData, columns: &Columns, row: &Row, old: Option<&Row>) {
    // NULL: refused by the column's NOT NULL after BEFORE triggers, with its own error.
    let Some(status) = row.string(columns.status) else {
        return;
    };
    let previous = old.and_then(|old| old.string(columns.status));
    if old.is_some() && previous.as_deref() == Some(status.as_str()) {
        return;
    }
    let notify = row.bool(columns.notify) == Some(true);
    let intermediate = row.bool(columns.intermediate_reports).unwrap_or(false);
    // SAFETY: a row trigger's trigger data is valid while it runs.
    let function = unsafe { (*data.tg_trigger).tgfoid };
    super::message_status(function, &status, previous.as_deref(), notify, intermediate, || {
        message(row, columns, status.clone(), previous.clone(), intermediate)
    });
}

/// BEFORE UPDATE on `callback.messages`: sets updated_at to the time of the change (now(),
/// which its callbacks report as status_at); then a new status is checked against
/// `callback.statuses` (what a foreign key would do, without its query) and what it means is
/// recorded, the rest of the row read only when something is. AFTER INSERT: the same for the
/// row inserted.
///
/// It runs as the caller; the statements recording runs, run as the function's owner (src/record/mod.rs).
#[pg_trigger]
fn _message_record<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let data = trigger.trigger_data();
    let before = data.tg_event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE;
    let columns = columns(data);
    let old = Row::old(data);
    let row = match (&old, before) {
        (Some(_), true) => Row::new(data).touched(columns.updated_at),
        _ => Row::new(data),
    };
    record_change(data, &columns, &row, old.as_ref());
    if !before {
        return Ok(None);
    }
    Ok(Some(row.into_heap_tuple()))
}

/// AFTER INSERT or UPDATE OF status on `callback.messages` in a schema of 0.1.0, until
/// `ALTER EXTENSION pg_callback UPDATE` puts `_message_record` in its place, which records
/// what the change means as this does. (Its symbol stays for those schemas; 0.2.0's has no
/// such function.)
#[pg_trigger(sql = false)]
fn _message_events<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    _message_record(trigger)
}
