//! Statements prepared once per backend and kept across transactions: recording runs in every
//! application transaction, and a worker claims and writes results thousands of times a
//! second, so neither should parse its SQL each time (recording keeps generic plans too; the
//! worker plans each run, see src/worker.rs). A set of plans belongs to the `callback` schema
//! it was made for; DROP and CREATE EXTENSION make a new one.

use pgrx::pg_sys::{self, PgOid};
use pgrx::spi::{SpiClient, SpiResult};
use std::cell::RefCell;
use std::ffi::CStr;
use std::thread::LocalKey;

/// The `callback` schema's oid (InvalidOid when the extension is not installed): a new one
/// after DROP and CREATE EXTENSION.
pub fn callback_schema() -> pg_sys::Oid {
    // SAFETY: a syscache lookup by name; missing_ok returns InvalidOid.
    unsafe { pg_sys::get_namespace_oid(c"callback".as_ptr(), true) }
}

/// A backend's plans of one kind, with the schema they were made for.
pub type Kept<P> = RefCell<Option<(pg_sys::Oid, P)>>;

/// Runs `f` with the plans kept in `cell`, making them with `make` first if there are none
/// for the current schema.
pub fn with<P: 'static, R>(
    cell: &'static LocalKey<Kept<P>>,
    client: &mut SpiClient<'_>,
    make: impl FnOnce(&mut SpiClient<'_>) -> SpiResult<P>,
    f: impl FnOnce(&mut SpiClient<'_>, &P) -> SpiResult<R>,
) -> SpiResult<R> {
    let schema = callback_schema();
    if !cell.with_borrow(|kept| kept.as_ref().is_some_and(|(s, _)| *s == schema)) {
        let plans = make(client)?;
        cell.set(Some((schema, plans)));
    }
    cell.with_borrow(|kept| f(client, &kept.as_ref().expect("made above").1))
}

/// Parameter types by SQL name.
pub fn types(names: &[&str]) -> Vec<PgOid> {
    names
        .iter()
        .map(|name| {
            PgOid::from(match *name {
                "text" => pg_sys::TEXTOID,
                "bigint" => pg_sys::INT8OID,
                "int" => pg_sys::INT4OID,
                "float8" => pg_sys::FLOAT8OID,
                "bool" => pg_sys::BOOLOID,
                "uuid" => pg_sys::UUIDOID,
                "jsonb" => pg_sys::JSONBOID,
                "timestamptz" => pg_sys::TIMESTAMPTZOID,
                "text[]" => pg_sys::TEXTARRAYOID,
                "bigint[]" => pg_sys::INT8ARRAYOID,
                "int[]" => pg_sys::INT4ARRAYOID,
                "float8[]" => pg_sys::FLOAT8ARRAYOID,
                "bool[]" => pg_sys::BOOLARRAYOID,
                "uuid[]" => pg_sys::UUIDARRAYOID,
                other => unreachable!("no parameter type {other}"),
            })
        })
        .collect()
}

/// Runs `f` with these settings (name, value), made at a new nesting level and undone at its
/// end, or by the transaction's abort, which undoes every level, if `f` raises an error.
pub fn with_settings<R>(settings: &[(&CStr, &CStr)], f: impl FnOnce() -> R) -> R {
    // SAFETY: settings made and undone as a function's SET clause makes and undoes them.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        for (name, value) in settings {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        let result = f();
        pg_sys::AtEOXact_GUC(true, level);
        result
    }
}
