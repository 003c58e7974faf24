//! Shared memory between the launcher, the workers and every backend that records callbacks:
//! who to wake, whether a wake-up is wanted, and when the next retry comes due.
//!
//! A transaction that records callbacks arms a commit hook (`_wake_on_commit`); at commit it
//! raises the wake flag and sets the latches of those who wait to be woken: the launcher when
//! no worker runs, and each worker asleep (not one that looks at the flag by itself every few
//! milliseconds, under a stream of events).

use super::spi::local_xid;
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
    /// Whether the launcher waits to be woken: no worker of its runs.
    launcher_waits: AtomicBool,
    workers: [AtomicI32; MAX_WORKERS],
    /// Whether each worker looks at the wake flag every few milliseconds by itself: setting its
    /// latch would cost a signal for nothing.
    polling: [AtomicBool; MAX_WORKERS],
}
unsafe impl PGRXSharedMemory for Procs {}

static PROCS: PgAtomic<Procs> = unsafe { PgAtomic::new(c"pg_callback_procs") };
/// Raised at commit by a transaction that recorded callbacks; lowered by a worker about to claim.
static WAKE: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"pg_callback_wake") };
/// Raised at commit by a transaction that stored events (pg_callback.recording = deferred), and
/// when shared memory is made; lowered by a worker about to render them. While it is down the
/// workers' claims skip rendering: nothing to render.
static EVENTS: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"pg_callback_events") };
/// When the next retry or lease expiry comes due, in Unix milliseconds (i64::MAX: none known).
static NEXT_DUE_MS: PgAtomic<AtomicI64> = unsafe { PgAtomic::new(c"pg_callback_next_due") };
/// Whether leases of workers that no longer run may be left: true when shared memory is made
/// (at start, and after a crash restart, which a killed worker causes) and when a worker stops
/// on an error. The next worker to start releases them (sql/worker/recover.sql).
static ORPHANED_LEASES: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"pg_callback_orphaned_leases") };
/// Raised by every commit that changed what rendering caches (src/render/cache.rs).
static SETTINGS_VERSION: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"pg_callback_settings_version") };

/// What each worker slot has done, for `callback.workers`: the process in it now (or last),
/// and counts since the server started.
#[derive(Default)]
pub struct WorkerStats {
    pid: AtomicI32,
    running: AtomicBool,
    started_ms: AtomicI64,
    in_flight: AtomicI32,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    last_claim_ms: AtomicI64,
    last_claim_size: AtomicI32,
    last_write_ms: AtomicI64,
}

#[derive(Default)]
pub struct Stats {
    workers: [WorkerStats; MAX_WORKERS],
}
unsafe impl PGRXSharedMemory for Stats {}

static STATS: PgAtomic<Stats> = unsafe { PgAtomic::new(c"pg_callback_stats") };
/// This process's worker slot, when it is a worker.
static MY_SLOT: AtomicI32 = AtomicI32::new(-1);

/// Whether the library was preloaded and the shared memory above exists in this process.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Requests the shared memory; called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(PROCS);
    pg_shmem_init!(WAKE);
    pg_shmem_init!(EVENTS = AtomicBool::new(true));
    pg_shmem_init!(NEXT_DUE_MS = AtomicI64::new(i64::MAX));
    pg_shmem_init!(SETTINGS_VERSION);
    pg_shmem_init!(ORPHANED_LEASES = AtomicBool::new(true));
    pg_shmem_init!(STATS);
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

/// Whether the launcher waits to be woken (it has no workers running); it says so before it
/// looks at the wake flag, so a commit either sets its latch or is seen.
pub fn launcher_waits(waits: bool) {
    PROCS.get().launcher_waits.store(waits, Ordering::SeqCst);
}

pub fn set_worker(slot: usize, running: bool) {
    let value = if running { my_procno() } else { 0 };
    PROCS.get().polling[slot].store(false, Ordering::SeqCst);
    PROCS.get().workers[slot].store(value, Ordering::SeqCst);
    let stats = &STATS.get().workers[slot];
    stats.running.store(running, Ordering::SeqCst);
    stats.in_flight.store(0, Ordering::SeqCst);
    if running {
        MY_SLOT.store(slot as i32, Ordering::SeqCst);
        // SAFETY: set in every process.
        stats.pid.store(unsafe { pg_sys::MyProcPid }, Ordering::SeqCst);
        stats.started_ms.store(now_ms(), Ordering::SeqCst);
    }
}

/// This worker's statistics (None outside a worker).
fn my_stats() -> Option<&'static WorkerStats> {
    let slot = usize::try_from(MY_SLOT.load(Ordering::SeqCst)).ok()?;
    Some(&STATS.get().workers[slot])
}

/// This worker claimed `count` callbacks (an empty claim is no batch).
pub fn worker_claimed(count: usize) {
    if let Some(stats) = my_stats().filter(|_| count > 0) {
        stats.last_claim_ms.store(now_ms(), Ordering::SeqCst);
        stats.last_claim_size.store(count as i32, Ordering::SeqCst);
    }
}

/// This worker has `count` requests in flight.
pub fn worker_in_flight(count: usize) {
    if let Some(stats) = my_stats() {
        stats.in_flight.store(count as i32, Ordering::SeqCst);
    }
}

/// This worker wrote the results of attempts: delivered, to be retried, failed for good.
pub fn worker_wrote(delivered: u64, retried: u64, failed: u64) {
    if let Some(stats) = my_stats() {
        stats.delivered.fetch_add(delivered, Ordering::SeqCst);
        stats.retried.fetch_add(retried, Ordering::SeqCst);
        stats.failed.fetch_add(failed, Ordering::SeqCst);
        stats.last_write_ms.store(now_ms(), Ordering::SeqCst);
    }
}

/// A row of `callback.workers` (api/functions.rs): slot, pid, running, started, in flight,
/// delivered, retried, failed, last claim (when, how many), last write. Times in Unix ms.
pub type WorkerRow = (
    i32,
    i32,
    bool,
    i64,
    i32,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i32>,
    Option<i64>,
);

/// The statistics of every worker slot that has been used since the server started; none
/// when the library is not preloaded.
pub fn worker_stats() -> Vec<WorkerRow> {
    if !PRELOADED.load(Ordering::SeqCst) {
        return Vec::new();
    }
    let when = |ms: i64| (ms > 0).then_some(ms);
    STATS
        .get()
        .workers
        .iter()
        .enumerate()
        .filter(|(_, w)| w.pid.load(Ordering::SeqCst) != 0)
        .map(|(slot, w)| {
            let last_claim = when(w.last_claim_ms.load(Ordering::SeqCst));
            (
                slot as i32,
                w.pid.load(Ordering::SeqCst),
                w.running.load(Ordering::SeqCst),
                w.started_ms.load(Ordering::SeqCst),
                w.in_flight.load(Ordering::SeqCst),
                w.delivered.load(Ordering::SeqCst) as i64,
                w.retried.load(Ordering::SeqCst) as i64,
                w.failed.load(Ordering::SeqCst) as i64,
                last_claim,
                last_claim.map(|_| w.last_claim_size.load(Ordering::SeqCst)),
                when(w.last_write_ms.load(Ordering::SeqCst)),
            )
        })
        .collect()
}

/// Raises the wake flag and, if it was down, sets the latches of those who wait to be woken:
/// the launcher when it has no workers, and the workers that do not poll. While the flag is
/// up, they have been woken and not yet looked (a worker lowers it before it claims):
/// signalling them again would cost every commit a system call or two for nothing. Setting
/// the latch of a process asleep is a signal; under a stream of commits the workers poll
/// instead (`polling`).
pub fn wake() {
    if !PRELOADED.load(Ordering::SeqCst) {
        return;
    }
    if WAKE.get().swap(true, Ordering::SeqCst) {
        return;
    }
    let procs = PROCS.get();
    if procs.launcher_waits.load(Ordering::SeqCst) {
        set_latch(procs.launcher.load(Ordering::SeqCst));
    }
    for (worker, polling) in procs.workers.iter().zip(&procs.polling) {
        if !polling.load(Ordering::SeqCst) {
            set_latch(worker.load(Ordering::SeqCst));
        }
    }
}

/// Whether this worker looks at the wake flag every few milliseconds by itself (no latch need
/// be set to wake it). Before it stops polling and sleeps it looks once more, so a commit
/// either sets its latch or is seen.
pub fn polling(polling: bool) {
    if let Ok(slot) = usize::try_from(MY_SLOT.load(Ordering::SeqCst)) {
        PROCS.get().polling[slot].store(polling, Ordering::SeqCst);
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

thread_local! {
    /// The local transaction id whose commit hook `wake` is armed already.
    static ARMED: Cell<u32> = const { Cell::new(0) };
    /// The local transaction id whose commit hook `events_committed` is armed already.
    static EVENTS_ARMED: Cell<u32> = const { Cell::new(0) };
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

/// Raises the events flag and wakes the delivery workers when the current transaction
/// commits: it stored events for them to render.
pub fn events_on_commit() {
    on_commit_once(&EVENTS_ARMED, events_committed);
}

fn events_committed() {
    EVENTS.get().store(true, Ordering::SeqCst);
    wake();
}

/// Lowers the events flag, saying whether there may be events to render (always, without
/// shared memory).
pub fn take_events() -> bool {
    !PRELOADED.load(Ordering::SeqCst) || EVENTS.get().swap(false, Ordering::SeqCst)
}

/// Events may be left to render (a worker starts: one before it may have stopped mid-way).
pub fn events_may_be_left() {
    if PRELOADED.load(Ordering::SeqCst) {
        EVENTS.get().store(true, Ordering::SeqCst);
    }
}

/// Wakes the delivery workers when the current transaction commits. Called by the triggers
/// that record callbacks; arms one hook per transaction however often it is called.
#[pg_extern(volatile, parallel_unsafe, name = "_wake_on_commit")]
pub fn wake_on_commit() {
    on_commit_once(&ARMED, wake);
}
