//! Delivery: the processes that send callbacks. The launcher (connected to no database)
//! starts workers when a commit recorded something or a retry comes due; each worker claims
//! due callbacks a batch at a time, sends them from its HTTP pool with no transaction or row
//! lock held, writes the results in one transaction per batch, and does the housekeeping.
//!
//! In: rows of `callback.callbacks_undone` that are due, with their `callback.requests` (and,
//! deferred, events to render first: src/render/expand.rs). Out: HTTP requests; rows of
//! `callback.deliveries` (the history), callbacks delivered, retried or failed, campaigns
//! disabled. SQL: sql/worker/*.sql.
//!
//! In the order a callback meets them: launcher, worker (the loop), claim (with the client
//! certificates it presents: identities; and its endpoint's health, which may keep it back),
//! send, write (which counts answers against endpoints: health), housekeeping; beside them,
//! the alert emails (emails) and campaign reports to object storage (reports).

pub mod launcher;
pub mod worker;

mod claim;
mod emails;
mod health;
mod housekeeping;
mod identities;
mod reports;
mod send;
mod write;

use crate::pg::spi::{hold_extension, installed_extension};
use pg_callback_core::retry::{Kind, Policy};
use pgrx::prelude::*;
use std::time::Duration;

/// How alert emails and campaign reports are retried: 10 attempts, waits doubling from 30 s to
/// an hour (about 4.5 hours in all; the callers scale them by pg_callback.time_scale).
fn retry_policy() -> Policy {
    Policy {
        kind: Kind::Exponential,
        max_attempts: 10,
        step: Duration::from_secs(30),
        cap: Duration::from_secs(3600),
        jitter: 0.0,
        intervals: Vec::new(),
        exactly_200: false,
    }
}

/// Whether SIGTERM asked this process to stop.
fn stopping() -> bool {
    // SAFETY: a flag the SIGTERM handler sets and nothing clears.
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

fn my_pid() -> i32 {
    // SAFETY: set in every process.
    unsafe { pg_sys::MyProcPid }
}

/// Shows what the worker does in pg_stat_activity: `running` with the step while in a
/// transaction, `idle` (with what it waits for) otherwise.
fn report(running: bool, what: &str) {
    thread_local! {
        static LAST: std::cell::RefCell<(bool, String)> = const { std::cell::RefCell::new((false, String::new())) };
    }
    // The send loop reports on every turn; only a change is written to shared memory.
    if LAST.with_borrow(|(r, w)| *r == running && w == what) {
        return;
    }
    LAST.set((running, what.to_string()));
    let state = if running {
        pg_sys::BackendState::STATE_RUNNING
    } else {
        pg_sys::BackendState::STATE_IDLE
    };
    if let Ok(what) = std::ffi::CString::new(what) {
        // SAFETY: the string outlives the call, which copies it.
        unsafe { pg_sys::pgstat_report_activity(state, what.as_ptr()) };
    }
}

/// Whether pg_callback is installed; if so, holds it until the transaction ends (a share lock
/// on the extension), so that DROP EXTENSION, which locks the extension before its tables,
/// waits for this transaction instead of deadlocking with it over two of its tables.
fn extension_installed() -> bool {
    // SAFETY: a syscache lookup by name (missing_ok), then a lock on what it found.
    unsafe {
        let extension = pg_sys::get_extension_oid(c"pg_callback".as_ptr(), true);
        if extension == pg_sys::InvalidOid {
            return false;
        }
        pg_sys::LockDatabaseObject(
            pg_sys::ExtensionRelationId,
            extension,
            0,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
    }
    // Dropped while this waited for the lock? (Taking it read what others committed.)
    // SAFETY: as above.
    let extension = unsafe { pg_sys::get_extension_oid(c"pg_callback".as_ptr(), true) };
    if extension == pg_sys::InvalidOid {
        return false;
    }
    hold_extension(extension);
    true
}

/// Whether installation `extension` (spi::installed_extension) is still the one installed (it
/// is held until the transaction ends). Dropped and created again, it is another one, whose
/// callbacks' ids start again at 1 and would be mistaken for those on the wire, and whose
/// schema may be of another version.
fn same_extension(extension: pg_sys::Oid) -> bool {
    extension_installed() && installed_extension() == extension
}
