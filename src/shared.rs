//! Shared memory between the launcher, the workers and every backend that records callbacks:
//! who to wake, whether a wake-up is wanted, and when the next retry comes due.
//!
//! A transaction that records callbacks arms a commit hook (`_wake_on_commit`); at commit it
//! raises the wake flag and sets the latches of the launcher and of every running worker.

use pgrx::callbacks::{register_xact_callback, PgXactCallbackEvent};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::thread::LocalKey;

/// The most workers that can run at once (the bound of `pg_callback.workers`).
pub const MAX_WORKERS: usize = 32;

/// The processes to wake; each slot holds a PGPROC number plus one (0: nobody).
#[derive(Default)]
pub struct Procs {
    launcher: AtomicI32,
    workers: [AtomicI32; MAX_WORKERS],
}
unsafe impl PGRXSharedMemory for Procs {}

static PROCS: PgAtomic<Procs> = unsafe { PgAtomic::new(c"pg_callback_procs") };
/// Raised at commit by a transaction that recorded callbacks; lowered by a worker about to claim.
static WAKE: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"pg_callback_wake") };
/// When the next retry or lease expiry comes due, in Unix milliseconds (i64::MAX: none known).
static NEXT_DUE_MS: PgAtomic<AtomicI64> = unsafe { PgAtomic::new(c"pg_callback_next_due") };
/// Whether leases of workers that no longer run may be left: true when shared memory is made
/// (at start, and after a crash restart, which a killed worker causes) and when a worker stops
/// on an error. The next worker to start releases them (sql/worker/recover.sql).
static ORPHANED_LEASES: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"pg_callback_orphaned_leases") };
/// Raised by every commit that changed what recording caches (src/record.rs).
static SETTINGS_VERSION: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"pg_callback_settings_version") };

/// Whether the library was preloaded and the shared memory above exists in this process.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Requests the shared memory; called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(PROCS);
    pg_shmem_init!(WAKE);
    pg_shmem_init!(NEXT_DUE_MS = AtomicI64::new(i64::MAX));
    pg_shmem_init!(SETTINGS_VERSION);
    pg_shmem_init!(ORPHANED_LEASES = AtomicBool::new(true));
    PRELOADED.store(true, Ordering::SeqCst);
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn my_procno() -> i32 {
    // SAFETY: MyProc is set for every process attached to shared memory, workers included.
    unsafe { (*pg_sys::MyProc).pgprocno + 1 }
}

/// Sets the latch of the process whose slot value (PGPROC number plus one) is `slot`.
fn set_latch(slot: i32) {
    if slot <= 0 {
        return;
    }
    // SAFETY: PGPROC entries live for the life of the cluster; setting the latch of a process
    // that has since exited only wakes whoever uses that entry now, which is harmless.
    unsafe {
        let proc = (*pg_sys::ProcGlobal).allProcs.add((slot - 1) as usize);
        pg_sys::SetLatch(&raw mut (*proc).procLatch);
    }
}

pub fn set_launcher() {
    PROCS.get().launcher.store(my_procno(), Ordering::SeqCst);
}

pub fn set_worker(slot: usize, running: bool) {
    let value = if running { my_procno() } else { 0 };
    PROCS.get().workers[slot].store(value, Ordering::SeqCst);
}

/// Raises the wake flag and sets every latch: launcher and running workers.
pub fn wake() {
    if !PRELOADED.load(Ordering::SeqCst) {
        return;
    }
    WAKE.get().store(true, Ordering::SeqCst);
    let procs = PROCS.get();
    set_latch(procs.launcher.load(Ordering::SeqCst));
    for worker in &procs.workers {
        set_latch(worker.load(Ordering::SeqCst));
    }
}

/// A worker stopped on an error, leaving its leases.
pub fn leases_orphaned() {
    ORPHANED_LEASES.get().store(true, Ordering::SeqCst);
}

/// Whether leases may be orphaned, lowering the flag: the caller releases them.
pub fn take_orphaned_leases() -> bool {
    ORPHANED_LEASES.get().swap(false, Ordering::SeqCst)
}

/// Lowers the wake flag, saying whether it was raised.
pub fn take_wake() -> bool {
    WAKE.get().swap(false, Ordering::SeqCst)
}

pub fn wake_wanted() -> bool {
    WAKE.get().load(Ordering::SeqCst)
}

pub fn next_due_ms() -> i64 {
    NEXT_DUE_MS.get().load(Ordering::SeqCst)
}

pub fn set_next_due_ms(ms: i64) {
    NEXT_DUE_MS.get().store(ms, Ordering::SeqCst);
}

/// The version of what recording caches; None without shared memory (not preloaded), when
/// nothing can be cached.
pub fn settings_version() -> Option<u64> {
    PRELOADED
        .load(Ordering::SeqCst)
        .then(|| SETTINGS_VERSION.get().load(Ordering::SeqCst))
}

fn bump_settings_version() {
    SETTINGS_VERSION.get().fetch_add(1, Ordering::SeqCst);
}

fn local_xid() -> u32 {
    // SAFETY: MyProc is valid in every backend.
    unsafe { (*pg_sys::MyProc).lxid }
}

thread_local! {
    /// The local transaction id whose commit hook `wake` is armed already.
    static ARMED: Cell<u32> = const { Cell::new(0) };
    /// The local transaction id that changed what recording caches (its commit hook
    /// `bump_settings_version` is armed).
    static CHANGED: Cell<u32> = const { Cell::new(0) };
}

/// Runs `hook` when the current transaction commits, once however often this is called in
/// it: `armed` remembers the transaction. Without shared memory there is nothing to do at commit.
fn on_commit_once(armed: &'static LocalKey<Cell<u32>>, hook: fn()) {
    let lxid = local_xid();
    if armed.get() == lxid {
        return;
    }
    armed.set(lxid);
    if PRELOADED.load(Ordering::SeqCst) {
        register_xact_callback(PgXactCallbackEvent::Commit, hook);
    }
}

/// Whether this transaction changed what recording caches: it must read it afresh.
pub fn settings_changed_here() -> bool {
    CHANGED.get() == local_xid()
}

/// Statement trigger on the tables recording caches: from this transaction's commit on, every
/// backend reads them again; until then this transaction reads them afresh each time.
#[pg_trigger]
fn _settings_changed<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    on_commit_once(&CHANGED, bump_settings_version);
    Ok(None)
}

/// Wakes the delivery workers when the current transaction commits. Called by the triggers
/// that record callbacks; arms one hook per transaction however often it is called.
#[pg_extern(volatile, parallel_unsafe, name = "_wake_on_commit")]
pub fn wake_on_commit() {
    on_commit_once(&ARMED, wake);
}
