//! A delivery worker: the loop that claims due callbacks a batch at a time (claim.rs), sends
//! them from the HTTP pool as the limits in flight and their endpoints' allow (pg_callback_core::
//! dispatch), with no transaction or row lock held, writes results as they come in
//! (write.rs), and exits after `pg_callback.idle_exit` with nothing to send.
//!
//! All SPI happens on this, the main thread; the HTTP thread sees only owned data.

use super::claim::{claim, Claimed, Left, Wanted};
use super::emails::Emails;
use super::housekeeping::{self, due, PURGE_EVERY, SWEEP_EVERY};
use super::reports::Reports;
use super::write::finish;
use super::{extension_installed, report, send, stopping};
use crate::api::settings as guc;
use crate::pg::shared;
use crate::pg::spi::installed_extension;
use crate::render;
use pg_callback_core::dispatch::{Dispatcher, Limits};
use pg_callback_core::http::{Pool, PoolConfig, Response};
use pg_callback_core::scan::{Found, Scan};
use pg_callback_core::tls::{self, Trust};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::time::{Duration, Instant};

/// How long the main thread waits for an answer before it looks for new callbacks, results
/// to write and SIGTERM.
const TICK: Duration = Duration::from_millis(1);
/// Woken this recently, a worker is in a stream of commits: it looks for new callbacks every
/// TICK by itself instead of sleeping until woken. Each wake-up of a process asleep costs the
/// committing transaction a signal; polling costs none, and renders and claims what a few
/// commits recorded in one go.
const STREAM: Duration = Duration::from_millis(100);
/// Results are written at least this often (sooner when a batch's worth is in). Each write is
/// planned afresh (see `run`), so fewer, larger writes: 20 ms cost about a tenth of the rate.
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// With nothing else on the wire results wait this long at most, so that a stream of single
/// callbacks is written a few at a time (a write per callback took the workers' time at 1,000
/// events a second); a callback waiting behind one of them is let go that much later.
const WRITE_SOON: Duration = Duration::from_millis(10);

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_callback_worker_main(arg: pg_sys::Datum) {
    // SAFETY: the launcher passes the slot number as an int4 datum.
    let slot = unsafe { i32::from_datum(arg, false) }
        .unwrap_or(0)
        .clamp(0, shared::MAX_WORKERS as i32 - 1) as usize;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some(&guc::database()), None);
    if let Ok(name) = std::ffi::CString::new(format!("pg_callback worker {slot}")) {
        // SAFETY: the string outlives the call, which copies it.
        unsafe { pg_sys::pgstat_report_appname(name.as_ptr()) };
    }
    shared::set_worker(slot, true);
    // An error ends the worker; say why in the log (a bare exit code tells an operator nothing).
    // The launcher starts workers again when there is work.
    PgTryBuilder::new(run)
        .catch_others(|caught| {
            let message = match &caught {
                CaughtError::PostgresError(e) | CaughtError::ErrorReport(e) => e.message().to_string(),
                CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
            };
            warning!("pg_callback worker stopped by an error: {message}");
            shared::leases_orphaned();
        })
        .execute();
    shared::set_worker(slot, false);
}

fn pool_config() -> PoolConfig {
    PoolConfig {
        in_flight: guc::MAX_IN_FLIGHT.get().max(1) as usize,
        trust: guc::trust(),
    }
}

/// The CAs `trust` says to trust: the system's and pg_callback.ca_bundle's (a problem reading
/// them is logged).
fn roots(trust: &Trust) -> tls::Roots {
    let (roots, problems) = tls::roots(trust);
    for problem in problems {
        warning!("pg_callback worker: {problem}");
    }
    roots
}

/// A new HTTP pool for the current settings, trusting the system's CAs and
/// pg_callback.ca_bundle's (a problem reading them is logged); a worker that cannot start its
/// threads stops with an error (the launcher starts another when there is work).
fn new_pool(config: PoolConfig) -> Pool {
    let roots = roots(&config.trust);
    Pool::new(config, &roots, guc::allowed_destinations())
        .unwrap_or_else(|e| error!("pg_callback worker: cannot start its HTTP thread: {e}"))
}

/// The worker's limits, from the settings.
fn limits() -> Limits {
    Limits {
        in_flight: guc::MAX_IN_FLIGHT.get().max(1) as usize,
        per_endpoint: guc::MAX_IN_FLIGHT_PER_HOST.get().max(1) as usize,
    }
}

fn batch_size() -> usize {
    guc::BATCH_SIZE.get().max(1) as usize
}

fn run() {
    let Some(extension) = BackgroundWorker::transaction(|| extension_installed().then(installed_extension)) else {
        log!(
            "pg_callback worker: extension pg_callback is not installed in database \"{}\"; exiting",
            guc::database()
        );
        shared::take_wake();
        return;
    };
    housekeeping::recover();
    render::derive_webhook_ids(extension);
    // The claim must walk the due index in order and stop after a batch. On a queue filled a
    // moment ago the statistics are stale, and the planner would rather read every due row
    // and sort them (7x the cost, for a backlog of 100,000). And the worker's statements are
    // planned for the queue as it is at each run: a plan kept from when it was empty joined a
    // million rows against the batch row by row.
    // A statement that runs away anyway is ended (its worker stops and a new one starts) rather
    // than holding up a fast shutdown, which waits for the statement.
    // No JIT: the generic plan of a batch's insert looks costly enough to compile, which took
    // most of a second for a few rows.
    // Commits wait for no disk, so that the application's commits and the worker's do not
    // queue for the same flushes. A crash may undo the worker's last commits after their
    // requests went out: the callbacks are then sent again with the same webhook-ids, those of
    // rendered events included (derived from the events: src/render/queue.rs), which receivers
    // drop as they drop retries. What must not be sent twice under two ids commits durably:
    // a batch made (src/deliver/claim.rs), alert emails, campaign reports.
    let session = "SET enable_bitmapscan = off; SET enable_sort = off; SET plan_cache_mode = force_custom_plan; \
                   SET statement_timeout = '2min'; SET jit = off; SET synchronous_commit = off";
    BackgroundWorker::transaction(|| Spi::run(session))
        .unwrap_or_else(|e| warning!("pg_callback worker: setting up its session: {e}"));
    shared::events_may_be_left();
    let mut worker = Worker::new(extension);
    while worker.turn() == Next::Again {}
}

/// What the loop does after a turn.
#[derive(PartialEq)]
enum Next {
    Again,
    Exit,
}

/// A worker's state between turns of its loop. Callbacks are claimed a batch at a time, sent
/// as threads and their endpoints' limits allow, and their results written every WRITE_EVERY (or
/// sooner when a batch's worth is in): a slow endpoint holds up only its own callbacks.
struct Worker {
    /// The installation this worker serves (spi::installed_extension).
    extension: pg_sys::Oid,
    pool: Pool,
    /// The settings of the pool to make once the current one has nothing on the wire (a
    /// reload changed them).
    new_pool: Option<PoolConfig>,
    /// Claimed callbacks, queued or in flight.
    work: Dispatcher<Claimed>,
    /// Results not written yet (None: to be given back unsent).
    answered: Vec<(Claimed, Option<Response>)>,
    /// An answer that came while the loop waited for one.
    next_answer: Option<Response>,
    last_write: Instant,
    idle_since: Instant,
    last_purge: Option<Instant>,
    last_sweep: Option<Instant>,
    /// Whether a claim may find something: after a wake-up, a full claim, or a write (which
    /// may have let waiting callbacks go).
    more: bool,
    /// When a commit last woke this worker: within STREAM, it polls.
    woken_at: Option<Instant>,
    /// Where the next claim reads the queue.
    scan: Scan,
    /// Whether the last claim left events to render.
    events_left: bool,
    /// When to claim again though nothing else says so: a tick after a claim that found
    /// another worker rendering (at once, the two would take turns claiming nothing); WRITE_SOON
    /// after a short claim that left this worker holding only the callbacks of full endpoints
    /// (as one left with nothing would after its write, not at its next write, which may wait
    /// for a slow endpoint's answer).
    look_again_at: Option<Instant>,
    /// When the first event waiting for its batch may go, as this worker last saw (Unix ms):
    /// a claim from then on makes the batches due (0: at the first claim).
    batches_at: i64,
    /// Alert emails: the mail thread and those on it.
    emails: Emails,
    /// Campaign reports on their way to object storage.
    reports: Reports,
}

impl Worker {
    fn new(extension: pg_sys::Oid) -> Worker {
        Worker {
            extension,
            pool: new_pool(pool_config()),
            new_pool: None,
            work: Dispatcher::default(),
            answered: Vec::new(),
            next_answer: None,
            last_write: Instant::now(),
            idle_since: Instant::now(),
            last_purge: None,
            last_sweep: None,
            more: true,
            woken_at: None,
            scan: Scan::default(),
            events_left: false,
            look_again_at: None,
            batches_at: 0,
            emails: Emails::default(),
            reports: Reports::default(),
        }
    }

    /// One turn of the loop: settings, answers, a claim, requests, results, then waiting.
    fn turn(&mut self) -> Next {
        self.reload();
        if stopping() {
            // Claimed but not answered: released unsent, for another worker (sent at least once).
            let unsent = self.work.take_all().into_iter().map(|c| (c, None));
            self.answered.extend(unsent);
            finish(std::mem::take(&mut self.answered));
            return Next::Exit;
        }
        if shared::take_wake() {
            self.more = true;
            self.woken_at = Some(Instant::now());
        }
        self.collect_answers();
        if self.look_again_at.is_some_and(|at| Instant::now() >= at) {
            self.look_again_at = None;
            self.more = true;
        }
        if self.more && self.room() && !self.claim() {
            return Next::Exit;
        }
        // A reload that came while claiming applies to what was just claimed: the callbacks of
        // an event committed after a reload are sent with the settings it brought.
        self.reload();
        self.pool.submit(
            self.work
                .to_send(limits(), Instant::now())
                .into_iter()
                .map(send::request),
        );
        // Results, emails and reports after the new callbacks are on their way: an event
        // committed meanwhile does not wait for them.
        self.write_when_due();
        self.emails.turn(self.extension, false);
        self.reports.turn(self.extension, false);
        if !self.work.is_empty() || !self.answered.is_empty() {
            self.busy();
            return Next::Again;
        }
        if self.more {
            return Next::Again;
        }
        self.wait()
    }

    /// Settings reloaded on SIGHUP. The CAs trusted (a new bundle, or the same file changed)
    /// and the destinations allowed apply from the next request on; a new number in flight
    /// makes a new pool once the old one has nothing on the wire.
    fn reload(&mut self) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: main thread, outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            self.pool.allow(guc::allowed_destinations());
            let config = pool_config();
            if config.trust != self.pool.config().trust {
                self.pool.trust(config.trust.clone(), &roots(&config.trust));
            }
            self.new_pool = Some(config).filter(|config| config.in_flight != self.pool.config().in_flight);
        }
        if self.work.is_empty() {
            if let Some(config) = self.new_pool.take() {
                self.pool = new_pool(config);
            }
        }
    }

    /// Answers that came in, and queued callbacks past their release time (given back unsent).
    fn collect_answers(&mut self) {
        while let Some(answer) = self.next_answer.take().or_else(|| self.pool.next(Duration::ZERO)) {
            if let Some(c) = self.work.answered(answer.key, answer.duration) {
                self.answered.push((c, Some(answer)));
            }
        }
        let overdue = self.work.overdue(Instant::now()).into_iter().map(|c| (c, None));
        self.answered.extend(overdue);
    }

    /// Writes the results when a batch's worth is in or they have waited long enough.
    fn write_when_due(&mut self) {
        let write_after = if self.work.is_empty() { WRITE_SOON } else { WRITE_EVERY };
        let full = self.answered.len() >= batch_size();
        if !self.answered.is_empty() && (full || self.last_write.elapsed() >= write_after) {
            // What this worker holds for an endpoint that went down waits for its probe, given
            // back with the next write, rather than going out after it.
            for endpoint in finish(std::mem::take(&mut self.answered)) {
                let unsent = self.work.take_queued(&endpoint).into_iter().map(|c| (c, None));
                self.answered.extend(unsent);
            }
            self.last_write = Instant::now();
            self.more = true;
            // A batch done may let events kept out behind it go (src/render/batches.rs).
            if render::next_send_by().is_some() {
                self.batches_at = 0;
            }
        }
    }

    /// Whether this worker has room for a claim: fewer callbacks queued for the free slots of
    /// their endpoints than it has threads. Those queued for a full endpoint do not count: a
    /// claim skips its callbacks, and takes the others'.
    fn room(&self) -> bool {
        let in_flight = limits().in_flight;
        self.work.queued_unpaced() < in_flight || self.work.queued_for_slots(limits(), Instant::now()) < in_flight
    }

    /// Claims what this worker has room for; false when the extension was dropped.
    fn claim(&mut self) -> bool {
        report(true, "claiming callbacks");
        let (batch, now) = (batch_size(), Instant::now());
        let wanted = Wanted {
            render: shared::take_events() || self.events_left || shared::now_ms() >= self.batches_at,
            count: batch - self.work.queued_for_slots(limits(), now).min(batch - 1),
            full_endpoints: self.work.full_endpoints(limits(), now),
            read: self.scan.next(),
        };
        let (extension, rendering, skipping) = (self.extension, wanted.render, wanted.skipping());
        let Some(claim) = BackgroundWorker::transaction(move || claim(extension, wanted)) else {
            finish(std::mem::take(&mut self.answered));
            log!("pg_callback worker: extension pg_callback was dropped; exiting");
            // It may have been created again already, and this worker may have taken the
            // wake-up meant for it: the launcher starts workers for whatever is installed now.
            shared::set_next_due_ms(shared::now_ms());
            return false;
        };
        let (claimed, left) = (claim.claimed, claim.left);
        shared::worker_claimed(claimed.len());
        self.events_left = left != Left::Nothing;
        if rendering && left != Left::OtherRenderer {
            self.batches_at = render::next_send_by().unwrap_or(i64::MAX);
        }
        let found = Found {
            skipping,
            full: claim.full,
            last: claim.last,
            window_end: claim.window_end,
        };
        let claimed_at = Instant::now();
        let window_read = self.scan.found(found, claimed_at);
        self.more = claim.full || left == Left::More || window_read;
        for c in claimed {
            let release_at = claimed_at + c.lease.mul_f64(0.5);
            let (endpoint, paces) = (c.endpoint.clone(), c.paces.clone());
            self.work.add(c.id, &endpoint, release_at, paces, c);
        }
        self.look_again_at = if left == Left::OtherRenderer {
            Some(claimed_at + TICK)
        } else if !self.more && skipping && !self.work.is_empty() {
            Some(claimed_at + WRITE_SOON)
        } else {
            None
        };
        true
    }

    /// With callbacks on the wire or results to write: housekeeping when due, then a wait of
    /// at most TICK for the next answer.
    fn busy(&mut self) {
        self.idle_since = Instant::now();
        if due(&mut self.last_purge, PURGE_EVERY) {
            housekeeping::purge();
        }
        if due(&mut self.last_sweep, SWEEP_EVERY) {
            self.more |= housekeeping::recover() | housekeeping::sweep();
        }
        report(
            false,
            &format!("sending callbacks ({} in flight)", self.work.in_flight()),
        );
        shared::worker_in_flight(self.work.in_flight());
        // Back at once for an answer; after TICK otherwise, for new callbacks and writes.
        self.next_answer = self.pool.next(TICK);
    }

    /// Nothing on the wire: poll under a stream of commits (or while alert emails are on their
    /// way, or a look again is due), else sleep until woken or the
    /// next retry is due, and leave after `pg_callback.idle_exit` of this.
    fn wait(&mut self) -> Next {
        let streaming = self.woken_at.is_some_and(|at| at.elapsed() < STREAM);
        if self.look_again_at.is_some() || streaming || self.emails.busy() {
            shared::polling(true);
            BackgroundWorker::wait_latch(Some(TICK));
            return Next::Again;
        }
        // Asleep until woken: said before the last look at the flag.
        shared::polling(false);
        if shared::wake_wanted() {
            return Next::Again;
        }
        // Emails and reports due now are looked for before sleeping (when busy, at most once a
        // second), so that the next due time is one still to come.
        self.emails.turn(self.extension, true);
        self.reports.turn(self.extension, true);
        if self.emails.busy() {
            return Next::Again;
        }
        let next_due = housekeeping::next_due_ms();
        let idle_limit = Duration::from_millis(guc::IDLE_EXIT_MS.get().max(0) as u64);
        let idle_for = self.idle_since.elapsed();
        if idle_for >= idle_limit {
            return self.leave(next_due);
        }
        let mut wait = idle_limit - idle_for;
        if let Some(due) = next_due {
            let until_due = Duration::from_millis((due as i64 - shared::now_ms()).max(1) as u64);
            self.more = until_due <= wait;
            wait = wait.min(until_due);
        }
        report(false, "waiting for callbacks");
        BackgroundWorker::wait_latch(Some(wait));
        Next::Again
    }

    /// Idle long enough: purge if due, tell the launcher when to come back, and exit, unless a
    /// wake-up or a waiting callback came meanwhile.
    fn leave(&mut self, next_due: Option<f64>) -> Next {
        if due(&mut self.last_purge, PURGE_EVERY) {
            housekeeping::purge();
        }
        shared::set_next_due_ms(next_due.map(|ms| ms as i64).unwrap_or(i64::MAX));
        if shared::wake_wanted() {
            return Next::Again;
        }
        // A last look before leaving: nothing waiting may be left without a worker, nor leased
        // by one that stopped on an error.
        if housekeeping::recover() | housekeeping::sweep() {
            self.more = true;
            return Next::Again;
        }
        Next::Exit
    }
}
