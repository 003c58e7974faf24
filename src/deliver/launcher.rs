//! The launcher: one background worker, connected to no database, that starts the delivery
//! workers when there is something to send, and sleeps otherwise.
//!
//! It wakes when a transaction that recorded callbacks commits while no worker runs (its latch
//! is set), when a worker exits (the postmaster tells it), or when the next retry comes due (its only timer).
//! Connected to no database, it never stands in the way of DROP DATABASE; workers exit
//! after `pg_callback.idle_exit` of idleness, so while nothing is due nothing is connected.

use crate::api::settings as guc;
use crate::pg::shared;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::time::{Duration, Instant};

/// The least time between two starts of the workers, so that workers failing at start (a
/// missing database, no free slot) are not restarted in a tight loop.
const START_RETRY: Duration = Duration::from_secs(1);
/// The launcher says it could not start workers at most this often (it tries every START_RETRY).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Registers the launcher; called from `_PG_init` while preloading.
pub fn register() {
    BackgroundWorkerBuilder::new("pg_callback launcher")
        .set_type("pg_callback launcher")
        .set_library("pg_callback")
        .set_function("pg_callback_launcher_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// Starts the worker of `slot`; None when every background worker slot is taken.
fn start_worker(slot: usize) -> Option<DynamicBackgroundWorker> {
    BackgroundWorkerBuilder::new(&format!("pg_callback worker {slot}"))
        .set_type("pg_callback worker")
        .set_library("pg_callback")
        .set_function("pg_callback_worker_main")
        .set_argument((slot as i32).into_datum())
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: MyProcPid is set in every process.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .ok()
}

fn alive(worker: &DynamicBackgroundWorker) -> bool {
    matches!(worker.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted))
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_callback_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // Connected to no database, like the logical replication launcher: it shows in
    // pg_stat_activity, and no DROP DATABASE ever waits for it.
    BackgroundWorker::connect_worker_to_spi(None, None);
    shared::set_launcher();
    log!(
        "pg_callback launcher started; delivering callbacks of database \"{}\"",
        guc::database()
    );

    let mut workers: Vec<DynamicBackgroundWorker> = Vec::new();
    let mut last_start: Option<Instant> = None;
    // A first pass at start delivers what an earlier run left, leases included.
    let mut first_pass = true;
    let mut timeout = Some(Duration::ZERO);
    // When it last said it could start no worker (said at most once a minute).
    let mut last_warning: Option<Instant> = None;
    while BackgroundWorker::wait_latch(timeout) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: called from the launcher's main thread, outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        workers.retain(alive);
        // Woken by commits only while it has no workers (the postmaster tells it when one exits);
        // said before it looks at the wake flag.
        shared::launcher_waits(workers.is_empty());
        let now = shared::now_ms();
        let next_due = shared::next_due_ms();
        timeout = None;
        if workers.is_empty() && (first_pass || shared::wake_wanted() || next_due <= now) {
            if let Some(since) = last_start.map(|t| t.elapsed()).filter(|&since| since < START_RETRY) {
                timeout = Some(START_RETRY - since);
                continue;
            }
            last_start = Some(Instant::now());
            shared::set_next_due_ms(i64::MAX);
            let wanted = guc::WORKERS.get().clamp(1, shared::MAX_WORKERS as i32) as usize;
            workers.extend((0..wanted).filter_map(start_worker));
            if workers.len() < wanted && last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                last_warning = Some(Instant::now());
                warning!(
                    "pg_callback launcher: could start only {} of {wanted} delivery workers: no free background worker slot; max_worker_processes must leave pg_callback.workers plus one for pg_callback",
                    workers.len()
                );
            }
            if workers.is_empty() {
                shared::set_next_due_ms(next_due.min(now));
                timeout = Some(START_RETRY);
                continue;
            }
            shared::launcher_waits(false);
            first_pass = false;
        } else if workers.is_empty() && next_due != i64::MAX {
            timeout = Some(Duration::from_millis((next_due - now).max(1) as u64));
        }
    }
    log!("pg_callback launcher stopping");
}
