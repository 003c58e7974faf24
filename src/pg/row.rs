//! Rows of a trigger's table, read by attribute number without pgrx's conversions by name.
//!
//! In: a row trigger's `TriggerData`. Out: column values as Rust values (enums as their label,
//! timestamps as Postgres microseconds, any column as text by name), and a row to return
//! with `updated_at` set.

use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use std::ffi::{CStr, CString};
use std::num::NonZeroUsize;

/// An attribute number; None when the table has no such column.
pub type Column = Option<NonZeroUsize>;

/// The attribute number of column `name`.
///
/// # Safety
/// `desc` is a valid tuple descriptor.
pub unsafe fn number(desc: pg_sys::TupleDesc, name: &str) -> Column {
    let name = CString::new(name).ok()?;
    // SAFETY: as the caller promises.
    let number = unsafe { pg_sys::SPI_fnumber(desc, name.as_ptr()) };
    NonZeroUsize::new(usize::try_from(number).ok()?)
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

    pub fn int(&self, column: Column) -> Option<i64> {
        self.datum(column).map(|d| d.value() as i64)
    }

    pub fn bool(&self, column: Column) -> Option<bool> {
        self.datum(column).map(|d| d.value() & 0xff != 0)
    }

    pub fn string(&self, column: Column) -> Option<String> {
        // SAFETY: a text column's datum, not NULL.
        unsafe { String::from_datum(self.datum(column)?, false) }
    }

    pub fn label(&self, column: Column) -> Option<String> {
        let value = self.datum(column)?;
        Some(pgrx::enum_helper::lookup_enum_by_oid(pg_sys::Oid::from(value.value() as u32)).0)
    }

    pub fn timestamp(&self, column: Column) -> Option<pg_sys::TimestampTz> {
        self.datum(column).map(|d| d.value() as pg_sys::TimestampTz)
    }

    /// A column's value as its type's output function writes it; None when NULL or missing.
    pub fn text(&self, column: &str) -> Option<String> {
        // SAFETY: the descriptor belongs to the running trigger.
        let number = unsafe { number(self.desc, column) }?;
        // SAFETY: as in datum(); SPI_getvalue returns NULL or a palloc'd C string.
        unsafe {
            let value = pg_sys::SPI_getvalue(self.tuple, self.desc, number.get() as i32);
            (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }

    /// A copy of the row with `column` (its `updated_at`) set to the time of the change
    /// (now()), in the trigger's memory context, as PL/pgSQL would make it.
    pub fn touched(&self, column: Column) -> Row {
        let Some(column) = column else {
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

    /// The row, for a BEFORE trigger to return.
    pub fn into_heap_tuple<'a>(self) -> PgHeapTuple<'a, AllocatedByPostgres> {
        // SAFETY: the row was formed with its table's own descriptor, and lives in the
        // trigger's memory context.
        unsafe {
            let desc = pgrx::PgTupleDesc::from_pg_unchecked(self.desc);
            PgHeapTuple::from_heap_tuple(desc, self.tuple)
        }
    }
}
