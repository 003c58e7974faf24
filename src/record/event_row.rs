//! Writes a row of `callback.events` straight into the table and its index, without SPI and
//! the executor. Storing an event is the whole of what a status change costs the application
//! with `pg_callback.recording = deferred`, and starting and ending the executor for a
//! one-row INSERT was most of it (BENCHMARKS.md, "Where the time goes").
//!
//! What the executor would add and this leaves out, on purpose: permission checks and
//! row-level security (this is the extension storing its own row, whoever made the change,
//! as its SECURITY DEFINER functions would as its owner, who bypasses them), triggers
//! (the table has none; it is pg_callback's own) and constraints (the caller fills account_id,
//! the only NOT NULL column without a default). The id comes from the table's identity
//! sequence and recorded_at is now(), as their defaults say.

use crate::pg::spi;
use pg_callback_core::event::Event;
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use pgrx::JsonB;
use std::cell::Cell;
use std::ffi::CStr;

/// A column's value.
enum Value<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Time(Option<pg_sys::TimestampTz>),
    Bool(Option<bool>),
    Json(Option<&'a serde_json::Value>),
}

impl Value<'_> {
    fn datum(&self) -> Option<Datum> {
        match *self {
            Value::Int(v) => v.into_datum(),
            Value::Text(v) => v.into_datum(),
            Value::Time(v) => v.map(Datum::from),
            Value::Bool(v) => v.into_datum(),
            Value::Json(v) => v.map(|j| JsonB(j.clone())).into_datum(),
        }
    }
}

thread_local! {
    /// The events table and the sequence of its id, as last looked up.
    static SEQUENCE: Cell<(pg_sys::Oid, pg_sys::Oid)> = const { Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
}

/// Inserts the row of `callback.events` that stores `event` (src/render/expand.rs reads it back).
pub fn insert(event: &Event) {
    use Value::{Bool, Int, Json, Text, Time};
    match event {
        Event::Status(m) => insert_row(&[
            ("account_id", Int(Some(m.account_id))),
            ("campaign_id", Int(m.campaign_id)),
            ("message_id", Int(Some(m.id))),
            ("list_id", Int(m.list_id)),
            ("member_id", Int(m.member_id)),
            ("batch_id", Text(m.batch_id.as_deref())),
            ("channel", Text(m.channel.as_deref())),
            ("destination", Text(m.destination.as_deref())),
            ("status", Text(Some(&m.status))),
            ("previous_status", Text(m.previous.as_deref())),
            ("error_code", Text(m.error_code.as_deref())),
            ("error_message", Text(m.error_message.as_deref())),
            ("callback_data", Text(m.callback_data.as_deref())),
            ("notify_url", Text(m.notify_url.as_deref())),
            ("notify_format", Text(m.notify_format.as_deref())),
            ("created_at", Time(m.created_at)),
            ("status_at", Time(m.status_at)),
            ("intermediate_reports", Bool(Some(m.intermediate))),
            ("has_attempts", Bool(Some(m.has_attempts))),
        ]),
        Event::Other(o) => insert_row(&[
            ("event", Text(Some(&o.event))),
            ("account_id", Int(Some(o.account_id))),
            ("campaign_id", Int(o.campaign_id)),
            ("message_id", Int(o.message_id)),
            ("list_id", Int(o.list_id)),
            ("channel", Text(o.channel.as_deref())),
            ("notify_url", Text(o.notify_url.as_deref())),
            ("notify_format", Text(o.notify_format.as_deref())),
            ("vars", Json(Some(&o.vars))),
            ("data", Json(Some(&o.data))),
        ]),
    }
}

/// Inserts a row of `callback.events` with these columns' values; the others are NULL, but id
/// and recorded_at, which take their defaults.
fn insert_row(columns: &[(&str, Value)]) {
    let table = spi::events_table();
    // SAFETY: the table is opened, locked as an INSERT would, and closed; the tuple is formed
    // from its own descriptor with a value and a null flag per attribute, and inserted with its
    // index entries by the routine the catalogs use (heap and btree, no expressions).
    unsafe {
        let rel = pg_sys::table_open(table, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        if (*(*rel).rd_rel).relam != pg_sys::HEAP_TABLE_AM_OID {
            error!("pg_callback: callback.events must be a heap table");
        }
        let desc = (*rel).rd_att;
        let count = (*desc).natts as usize;
        let mut values = vec![Datum::from(0); count];
        let mut nulls = vec![true; count];
        let attrs = (*desc).attrs.as_slice(count);
        for (i, attr) in attrs.iter().enumerate() {
            if attr.attisdropped {
                continue;
            }
            let name = CStr::from_ptr(attr.attname.data.as_ptr()).to_bytes();
            let value = match name {
                b"id" => Some(Datum::from(next_id(table, attr.attnum))),
                b"recorded_at" => Some(Datum::from(pg_sys::GetCurrentTransactionStartTimestamp())),
                _ => columns
                    .iter()
                    .find(|(column, _)| column.as_bytes() == name)
                    .and_then(|(_, value)| value.datum()),
            };
            if let Some(value) = value {
                values[i] = value;
                nulls[i] = false;
            }
        }
        let tuple = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::CatalogTupleInsert(rel, tuple);
        pg_sys::heap_freetuple(tuple);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

/// The next value of the identity sequence of `table`'s column `attnum`.
fn next_id(table: pg_sys::Oid, attnum: pg_sys::AttrNumber) -> i64 {
    let (known, sequence) = SEQUENCE.get();
    let sequence = if known == table {
        sequence
    } else {
        // SAFETY: reads pg_depend; the column is an identity column (sql/events.sql).
        let sequence = unsafe { pg_sys::getIdentitySequence(table, attnum, false) };
        SEQUENCE.set((table, sequence));
        sequence
    };
    // SAFETY: the sequence exists (its table was just opened and locked); an error it raises
    // is caught at the boundary, with nothing of ours to drop inside it.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| nextval_internal(sequence, false)) }
}

unsafe extern "C-unwind" {
    /// nextval() without its permission check (commands/sequence.h): events are stored as
    /// the caller, who may not use the table's sequence (src/record/mod.rs).
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}
