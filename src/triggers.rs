//! The row triggers on `callback.messages`: what a change of a message means is worked out
//! here, from the row read by attribute number, and recorded by src/record.rs.
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

use crate::record::{self, Message};
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CStr;
use std::num::NonZeroUsize;

/// An attribute number; None when the table has no such column.
type Column = Option<NonZeroUsize>;

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
                    $($name: unsafe { number(desc, name(concat!(stringify!($name), "\0"))) },)*
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

/// A column name spelt with its NUL.
fn name(spelt: &'static str) -> &'static CStr {
    CStr::from_bytes_with_nul(spelt.as_bytes()).expect("a NUL-terminated name")
}

/// # Safety
/// `desc` is a valid tuple descriptor.
unsafe fn number(desc: pg_sys::TupleDesc, name: &CStr) -> Column {
    // SAFETY: as the caller promises.
    let number = unsafe { pg_sys::SPI_fnumber(desc, name.as_ptr()) };
    NonZeroUsize::new(usize::try_from(number).ok()?)
}

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

/// A row of a trigger's table, read without pgrx's conversions by name: enums as their label,
/// timestamps as microseconds, any column as text by name.
pub struct Row {
    tuple: *mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
}

impl Row {
    /// The row being inserted, or an UPDATE's new row (before BEFORE triggers changed it).
    pub fn new(data: &pg_sys::TriggerData) -> Row {
        let tuple = if data.tg_newtuple.is_null() {
            data.tg_trigtuple
        } else {
            data.tg_newtuple
        };
        // SAFETY: a row trigger's relation is open while it runs.
        Row {
            tuple,
            desc: unsafe { (*data.tg_relation).rd_att },
        }
    }

    /// An UPDATE's old row; None for an INSERT.
    pub fn old(data: &pg_sys::TriggerData) -> Option<Row> {
        (!data.tg_newtuple.is_null()).then(|| Row {
            tuple: data.tg_trigtuple,
            // SAFETY: as in new().
            desc: unsafe { (*data.tg_relation).rd_att },
        })
    }

    fn datum(&self, column: Column) -> Option<Datum> {
        // SAFETY: the row and its descriptor belong to the running trigger; the column number
        // comes from that descriptor.
        unsafe { pgrx::heap_getattr_raw(self.tuple, column?, self.desc) }
    }

    fn int(&self, column: Column) -> Option<i64> {
        self.datum(column).map(|d| d.value() as i64)
    }

    fn bool(&self, column: Column) -> Option<bool> {
        self.datum(column).map(|d| d.value() & 0xff != 0)
    }

    fn string(&self, column: Column) -> Option<String> {
        // SAFETY: a text column's datum, not NULL.
        unsafe { String::from_datum(self.datum(column)?, false) }
    }

    fn label(&self, column: Column) -> Option<String> {
        let value = self.datum(column)?;
        Some(pgrx::enum_helper::lookup_enum_by_oid(pg_sys::Oid::from(value.value() as u32)).0)
    }

    fn timestamp(&self, column: Column) -> Option<pg_sys::TimestampTz> {
        self.datum(column).map(|d| d.value() as pg_sys::TimestampTz)
    }

    /// A column's value as its type's output function writes it; None when NULL or missing.
    pub fn text(&self, column: &str) -> Option<String> {
        let column = std::ffi::CString::new(column).ok()?;
        // SAFETY: the descriptor belongs to the running trigger.
        let number = unsafe { number(self.desc, &column) }?;
        // SAFETY: as in datum(); SPI_getvalue returns NULL or a palloc'd C string.
        unsafe {
            let value = pg_sys::SPI_getvalue(self.tuple, self.desc, number.get() as i32);
            (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }

    /// A copy of the row with `updated_at` set to the time of the change (now()), in the
    /// trigger's memory context, as PL/pgSQL would make it.
    fn touched(&self, columns: &Columns) -> Row {
        let Some(column) = columns.updated_at else {
            error!("pg_callback: callback.messages needs an updated_at column");
        };
        let mut column = column.get() as i32;
        // SAFETY: reads the current transaction's start time.
        let mut now = Datum::from(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() });
        let mut null = false;
        // SAFETY: the row and its descriptor are valid; one column replaced.
        let tuple =
            unsafe { pg_sys::heap_modify_tuple_by_cols(self.tuple, self.desc, 1, &mut column, &mut now, &mut null) };
        Row { tuple, desc: self.desc }
    }
}

/// The message a row of `callback.messages` holds, changing from status `previous`.
fn message(row: &Row, c: &Columns, status: String, previous: Option<String>, intermediate: bool) -> Message {
    Message {
        id: row.int(c.id).expect("a message has an id"),
        account_id: row.int(c.account_id).expect("a message has an account"),
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
    record::message_status(function, &status, previous.as_deref(), notify, intermediate, || {
        message(row, columns, status.clone(), previous.clone(), intermediate)
    });
}

/// BEFORE UPDATE on `callback.messages`: sets updated_at to the time of the change (now(),
/// which its callbacks report as status_at); then a new status is checked against
/// `callback.statuses` (what a foreign key would do, without its query) and what it means is
/// recorded, the rest of the row read only when something is. AFTER INSERT: the same for the
/// row inserted.
///
/// It runs as the caller; the statements recording runs, run as the function's owner (src/record.rs).
#[pg_trigger]
fn _message_record<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let data = trigger.trigger_data();
    let before = data.tg_event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE;
    let columns = columns(data);
    let old = Row::old(data);
    let row = match (&old, before) {
        (Some(_), true) => Row::new(data).touched(&columns),
        _ => Row::new(data),
    };
    record_change(data, &columns, &row, old.as_ref());
    if !before {
        return Ok(None);
    }
    // SAFETY: the row was formed with the table's own descriptor.
    let desc = unsafe { pgrx::PgTupleDesc::from_pg_unchecked(row.desc) };
    // SAFETY: as above; the tuple lives in the trigger's memory context.
    Ok(Some(unsafe { PgHeapTuple::from_heap_tuple(desc, row.tuple) }))
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
