//! SPI glue: statements prepared once per backend and kept across transactions, settings made
//! for the length of a call, and running as a function's owner.
//!
//! Rendering runs in every application transaction (with `pg_callback.recording = immediate`)
//! and a worker claims and writes results thousands of times a second, so neither should parse
//! its SQL each time (rendering keeps generic plans too; the worker plans each run, see
//! src/deliver/worker.rs). A set of plans belongs to the installation it was made for
//! (`installed_extension()`): DROP and CREATE EXTENSION make a new one, of any version.

use pgrx::pg_sys::{self, PgOid};
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};
use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;
use std::thread::LocalKey;

/// The `callback` schema's oid (InvalidOid when there is none). DROP EXTENSION leaves the
/// schema behind, so it is the same after DROP and CREATE EXTENSION: what belongs to one
/// installation is told by `installed_extension()`.
pub fn callback_schema() -> pg_sys::Oid {
    // SAFETY: a syscache lookup by name; missing_ok returns InvalidOid.
    unsafe { pg_sys::get_namespace_oid(c"callback".as_ptr(), true) }
}

thread_local! {
    /// The installation this backend's transaction (its local id) holds locked, and whether
    /// its callbacks are split (`split_callbacks`): a worker's (`hold_extension`).
    static HELD: Cell<Option<(u32, pg_sys::Oid, bool)>> = const { Cell::new(None) };
    /// The installation last read from pg_extension, and the oid its `callback.events` had.
    static LOOKED_UP: Cell<(pg_sys::Oid, pg_sys::Oid)> = const { Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
    /// `callback.events` as looked up in a command of a transaction (local id, command id).
    static EVENTS: Cell<((u32, u32), pg_sys::Oid)> = const { Cell::new(((0, 0), pg_sys::InvalidOid)) };
}

/// This backend's local transaction id (0 outside a transaction).
pub fn local_xid() -> u32 {
    // SAFETY: MyProc is valid in every backend.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// The installed pg_callback's oid (InvalidOid when it is not installed): a new one after DROP
/// and CREATE EXTENSION, whatever version is created. Plans, caches and claimed callbacks
/// belong to the installation they were made for.
///
/// Every status change asks (is what recording cached still this installation's?), and
/// pg_extension has no syscache: reading it costs more than storing the event did. So the
/// answer is kept with the oid of `callback.events` (a syscache lookup), which each
/// installation makes anew and DROP EXTENSION drops; a schema without the table (0.1.0) reads
/// pg_extension each time.
pub fn installed_extension() -> pg_sys::Oid {
    if let Some((extension, _)) = held() {
        return extension;
    }
    let events = events_table();
    let (known_events, known) = LOOKED_UP.get();
    if events != pg_sys::InvalidOid && events == known_events {
        return known;
    }
    // SAFETY: a lookup by name in pg_extension; missing_ok returns InvalidOid.
    let extension = unsafe { pg_sys::get_extension_oid(c"pg_callback".as_ptr(), true) };
    LOOKED_UP.set((events, extension));
    extension
}

/// The installation this transaction holds, and its layout of callbacks, if it holds one.
fn held() -> Option<(pg_sys::Oid, bool)> {
    match HELD.get() {
        Some((xid, extension, split)) if xid == local_xid() && xid != 0 => Some((extension, split)),
        _ => None,
    }
}

/// This transaction holds installation `extension` locked until it ends (a worker's, which
/// runs no DDL: src/deliver/mod.rs): DROP EXTENSION waits for it, so `installed_extension`
/// answers from memory until then instead of reading pg_extension at each use (a dozen times
/// in each of a worker's claims), and `split_callbacks` likewise (each use of kept plans asks).
pub fn hold_extension(extension: pg_sys::Oid) {
    HELD.set(Some((local_xid(), extension, look_for_split_callbacks())));
}

/// The oid of `callback.events` (InvalidOid when the installed schema has none: 0.1.0).
/// Asked several times by each status change; looked up once per command of a transaction
/// (DDL that could drop or make the table is a command of its own).
pub fn events_table() -> pg_sys::Oid {
    // SAFETY: the current command's id, as every statement reads it.
    let command = (local_xid(), unsafe { pg_sys::GetCurrentCommandId(false) });
    let (known_command, known) = EVENTS.get();
    if known_command == command && command.0 != 0 {
        return known;
    }
    // SAFETY: a syscache lookup by name.
    let events = unsafe { pg_sys::get_relname_relid(c"events".as_ptr(), callback_schema()) };
    EVENTS.set((command, events));
    events
}

/// Whether `callback.{table}` has a column `column`: what a schema older than this library
/// lacks until `ALTER EXTENSION pg_callback UPDATE`.
pub fn has_column(table: &CStr, column: &CStr) -> bool {
    // SAFETY: syscache lookups by name; a missing table is InvalidOid, whose attnum is invalid.
    unsafe {
        let relid = pg_sys::get_relname_relid(table.as_ptr(), callback_schema());
        relid != pg_sys::InvalidOid && pg_sys::get_attnum(relid, column.as_ptr()) != pg_sys::InvalidAttrNumber as i16
    }
}

/// Whether the installed schema keeps callbacks in three parts (`callback.requests`, the queue
/// and the done ones: sql/queue.sql, 0.3.0). An older one runs the statements in sql/compat/
/// until `ALTER EXTENSION pg_callback UPDATE` splits them, under the same installation.
pub fn split_callbacks() -> bool {
    match held() {
        Some((_, split)) => split,
        None => look_for_split_callbacks(),
    }
}

/// A statement on the queue as 0.3.0 keeps it, which orders callbacks by `order_hash` (a hash
/// of the order key, `$1` an array of them), for the installed schema: an older one orders by
/// `order_key` itself until `ALTER EXTENSION pg_callback UPDATE`.
pub fn for_queue_order(sql: &str) -> String {
    match split_callbacks() {
        true => sql.to_string(),
        false => sql
            .replace("order_hash", "order_key")
            .replace("$1::bigint[]", "$1::text[]"),
    }
}

/// Whether `callback.requests` exists, looked up.
fn look_for_split_callbacks() -> bool {
    // SAFETY: syscache lookups by name.
    unsafe { pg_sys::get_relname_relid(c"requests".as_ptr(), callback_schema()) != pg_sys::InvalidOid }
}

/// A backend's plans of one kind, with what they were made for: the installation
/// (`installed_extension()`) and its layout of callbacks (`split_callbacks()`).
pub type Kept<P> = RefCell<Option<((pg_sys::Oid, bool), Rc<P>)>>;

/// Runs `f` with the plans kept in `cell`, making them with `make` first if there are none
/// for the installation and its layout now. The cell is not borrowed while `f` runs: `f` may raise an error,
/// or record an event that uses the same plans.
pub fn with<P: 'static, R>(
    cell: &'static LocalKey<Kept<P>>,
    client: &mut SpiClient<'_>,
    make: impl FnOnce(&mut SpiClient<'_>) -> SpiResult<P>,
    f: impl FnOnce(&mut SpiClient<'_>, &P) -> SpiResult<R>,
) -> SpiResult<R> {
    let made_for = (installed_extension(), split_callbacks());
    let kept = cell.with_borrow(|kept| kept.as_ref().filter(|(m, _)| *m == made_for).map(|(_, p)| Rc::clone(p)));
    let plans = match kept {
        Some(plans) => plans,
        None => {
            let plans = Rc::new(make(client)?);
            cell.set(Some((made_for, Rc::clone(&plans))));
            plans
        }
    };
    f(client, &plans)
}

/// Parameter types by SQL name (an unknown name is InvalidOid, which preparing refuses).
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
                _ => pg_sys::InvalidOid,
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

/// This transaction's commit waits for its WAL to reach the disk as the server's settings say
/// (`synchronous_commit` as RESET gives it, until the transaction ends), in a session that
/// set it off (the workers: src/deliver/worker.rs). A commit that does not wait may be undone
/// by a crash (the server's, or any backend's) in the moment after it; what other sessions saw
/// of it reaches the disk in commit order, with the next commit that waits.
pub fn commit_durably() {
    // SAFETY: a setting made for the current transaction, as SET LOCAL makes it; no value is
    // the value RESET gives.
    unsafe {
        pg_sys::set_config_option(
            c"synchronous_commit".as_ptr(),
            std::ptr::null(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
}

/// Runs `f` with `plan_cache_mode = force_generic_plan` and no sequential scans: for
/// statements whose kept plan must hold whatever the statistics said when it was made (a queue
/// that looked empty then may hold a million rows now). Rendering and the claim run so.
pub fn with_generic_plans<R>(f: impl FnOnce() -> R) -> R {
    with_settings(
        &[(c"plan_cache_mode", c"force_generic_plan"), (c"enable_seqscan", c"off")],
        f,
    )
}

/// Runs `f` with `plan_cache_mode = force_generic_plan`: for statements that read the whole
/// of a small table (settings), whose plan holds whatever its size.
pub fn with_kept_plans<R>(f: impl FnOnce() -> R) -> R {
    with_settings(&[(c"plan_cache_mode", c"force_generic_plan")], f)
}

/// Runs `f` as the owner of `function`, with search_path = pg_catalog, pg_temp: what SECURITY
/// DEFINER and that SET clause would do for the whole function. An error leaves the undoing
/// to the (sub)transaction's abort, as it does for them.
pub fn as_owner<R>(function: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let owner = pgrx::pg_catalog::pg_proc::PgProc::new(function)
        .map(|proc| proc.proowner())
        .unwrap_or_else(|| error!("pg_callback: function {function:?} not found"));
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: the user and security context are read, changed and restored as
    // fmgr_security_definer does it.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let result = with_settings(&[(c"search_path", c"pg_catalog, pg_temp")], f);
    // SAFETY: as above.
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}
