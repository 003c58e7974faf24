//! A delivery worker: claims due callbacks a batch at a time (one short transaction), sends
//! them from the HTTP pool as threads and their hosts' limits allow (src/dispatch.rs), with no
//! transaction or row lock held, writes results as they come in, and exits after
//! `pg_callback.idle_exit` with nothing to send.
//!
//! All SPI happens on this, the main thread; the HTTP threads see only owned data.

use crate::dispatch::{Dispatcher, Limits};
use crate::http::{Pool, PoolConfig, Request, Response};
use crate::plans::{self, callback_schema, types, Kept};
use crate::retry::{judge, Attempt, Kind, Policy, Verdict};
use crate::{guc, record, shared, signing};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CLAIM: &str = include_str!("../sql/worker/claim.sql");
const POLICIES: &str = include_str!("../sql/worker/policies.sql");
const FINISH: &str = include_str!("../sql/worker/finish.sql");
const RELEASE: &str = include_str!("../sql/worker/release.sql");
const SWEEP: &str = include_str!("../sql/worker/sweep.sql");
const AFTER_FAILURE: &str = include_str!("../sql/worker/after_failure.sql");
const NEXT_DUE: &str = include_str!("../sql/worker/next_due.sql");
const RECOVER: &str = include_str!("../sql/worker/recover.sql");
const PURGE: &str = include_str!("../sql/worker/purge.sql");
/// Events recorded with pg_callback.recording = deferred are rendered into callbacks at the
/// start of a claim (when a commit stored some since the last), this many at most, and claimed
/// in the same transaction.
const EXPAND_BATCH: i32 = 1000;

/// How long the main thread waits for an answer before it looks for new callbacks, results
/// to write and SIGTERM.
const TICK: Duration = Duration::from_millis(2);
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
/// Retention deletes this many delivered callbacks per transaction, at most this often (a
/// worker purges once in its life at least, when it is busy or about to leave).
const PURGE_BATCH: i64 = 10_000;
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Waiting callbacks whose release was missed are let go this often while busy (sweep.sql).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The worker's two statements run thousands of times a second, parsed once (src/plans.rs) and
/// planned at each run (see `run`).
struct Plans {
    claim: OwnedPreparedStatement,
    finish: OwnedPreparedStatement,
    release: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: Kept<Plans> = const { std::cell::RefCell::new(None) };
}

fn prepare(client: &mut SpiClient<'_>) -> SpiResult<Plans> {
    let claim = ["int", "int", "int", "float8", "text[]", "float8", "bigint"];
    let finish = [
        "bigint[]", "int[]", "float8[]", "float8[]", "int[]", "text[]", "text[]", "text[]", "float8[]", "int",
    ];
    Ok(Plans {
        claim: client.prepare_mut(CLAIM, &types(&claim))?.keep(),
        finish: client.prepare_mut(FINISH, &types(&finish))?.keep(),
        release: client.prepare_mut(RELEASE, &types(&["text[]"]))?.keep(),
    })
}

/// A claimed callback, with everything needed to send it and judge the answer.
struct Claimed {
    id: i64,
    webhook_id: String,
    post: bool,
    url: String,
    headers: String,
    body: Option<String>,
    auth_header: Option<String>,
    signing_secret: Option<String>,
    attempts: u32,
    policy: Rc<Policy>,
    timeout: Duration,
    /// How long its lease lasts from the claim: it is given back unsent after half of that.
    lease: Duration,
    /// When it was due (Unix seconds): with the id, where the next claim starts.
    due: f64,
    /// The `callback` schema it was claimed from: if the extension is dropped and created
    /// again meanwhile, its result is not written (its id may name a new callback).
    schema: pg_sys::Oid,
}

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

fn stopping() -> bool {
    // SAFETY: a flag the SIGTERM handler sets and nothing clears.
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

fn my_pid() -> i32 {
    // SAFETY: set in every process.
    unsafe { pg_sys::MyProcPid }
}

fn pool_config() -> PoolConfig {
    PoolConfig {
        threads: guc::MAX_IN_FLIGHT.get().max(1) as usize,
    }
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
    unsafe { pg_sys::get_extension_oid(c"pg_callback".as_ptr(), true) != pg_sys::InvalidOid }
}

/// The worker's limits, from the settings.
fn limits() -> Limits {
    Limits {
        in_flight: guc::MAX_IN_FLIGHT.get().max(1) as usize,
        per_host: guc::MAX_IN_FLIGHT_PER_HOST.get().max(1) as usize,
    }
}

fn run() {
    // The extension this worker serves: dropped and created again, it is another one, whose
    // callbacks' ids start again at 1 and would be mistaken for those on the wire.
    let Some(schema) = BackgroundWorker::transaction(|| extension_installed().then(callback_schema)) else {
        log!(
            "pg_callback worker: extension pg_callback is not installed in database \"{}\"; exiting",
            guc::database()
        );
        shared::take_wake();
        return;
    };
    // It reads the whole queue, so only when a worker may have left leases behind.
    if shared::take_orphaned_leases() {
        BackgroundWorker::transaction(|| Spi::run(RECOVER)).unwrap_or_else(|e| {
            shared::leases_orphaned();
            warning!("recovering leases: {e}")
        });
    }
    // The claim must walk the due index in order and stop after a batch. On a queue filled a
    // moment ago the statistics are stale, and the planner would rather read every due row
    // and sort them (7x the cost, for a backlog of 100,000). And the worker's statements are
    // planned for the queue as it is at each run: a plan kept from when it was empty joined a
    // million rows against the batch row by row.
    // A statement that runs away anyway is ended (its worker stops and a new one starts) rather
    // than holding up a fast shutdown, which waits for the statement.
    // No JIT: the generic plan of a batch's insert looks costly enough to compile, which took
    // most of a second for a few rows.
    let planner = "SET enable_bitmapscan = off; SET enable_sort = off; SET plan_cache_mode = force_custom_plan; \
                   SET statement_timeout = '2min'; SET jit = off";
    BackgroundWorker::transaction(|| Spi::run(planner)).unwrap_or_else(|e| warning!("setting the planner: {e}"));
    let mut pool = Pool::new(pool_config(), guc::allowed_destinations());
    // Callbacks are claimed a batch at a time, sent as threads and their hosts' limits allow,
    // and their results written every WRITE_EVERY (or sooner when a batch's worth is in): a
    // slow endpoint holds up only its own callbacks.
    let mut work: Dispatcher<Claimed> = Dispatcher::default();
    let mut answered: Vec<(Claimed, Option<Response>)> = Vec::new();
    let mut last_write = Instant::now();
    let mut idle_since = Instant::now();
    let mut last_purge: Option<Instant> = None;
    let mut last_sweep: Option<Instant> = None;
    // Whether a claim may find something: after a wake-up, a full claim, or a write (which
    // may have let waiting callbacks go).
    let mut more = true;
    let mut next_answer: Option<Response> = None;
    // When a commit last woke this worker: within STREAM, it polls.
    let mut woken_at: Option<Instant> = None;
    // Where the next claim starts: after the last callback claimed (None: from the start).
    let mut cursor: Option<(f64, i64)> = None;
    // Whether the last claim left events to render, and when it last found another worker
    // rendering them.
    let mut events_left = false;
    let mut other_renderer: Option<Instant> = None;
    shared::events_may_be_left();
    loop {
        if BackgroundWorker::sighup_received() {
            // SAFETY: main thread, outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            pool.allow(guc::allowed_destinations());
        }
        // A new pool for new pool settings, once the old one has nothing on the wire.
        if work.is_empty() && pool.config() != pool_config() {
            pool = Pool::new(pool_config(), guc::allowed_destinations());
        }
        if stopping() {
            // Claimed but not answered: released unsent, for another worker (sent at least once).
            answered.extend(work.take_all().into_iter().map(|c| (c, None)));
            finish(answered);
            return;
        }
        if shared::take_wake() {
            more = true;
            woken_at = Some(Instant::now());
        }
        while let Some(answer) = next_answer.take().or_else(|| pool.next(Duration::ZERO)) {
            if let Some(c) = work.answered(answer.key, answer.duration) {
                answered.push((c, Some(answer)));
            }
        }
        answered.extend(work.overdue(Instant::now()).into_iter().map(|c| (c, None)));
        let batch = guc::BATCH_SIZE.get().max(1) as usize;
        let write_after = if work.is_empty() { WRITE_SOON } else { WRITE_EVERY };
        if !answered.is_empty() && (answered.len() >= batch || last_write.elapsed() >= write_after) {
            finish(std::mem::take(&mut answered));
            last_write = Instant::now();
            more = true;
        }
        // Another worker was rendering: look again a tick later, not at once (the two would
        // take turns claiming nothing).
        if other_renderer.is_some_and(|at| at.elapsed() >= TICK) {
            other_renderer = None;
            more = true;
        }
        if more && work.queued() < limits().in_flight {
            report(true, "claiming callbacks");
            let wanted = batch - work.queued().min(batch - 1);
            let render = shared::take_events() || events_left;
            let Some((claimed, left)) =
                BackgroundWorker::transaction(|| claim(schema, render, wanted, work.full_hosts(limits()), cursor))
            else {
                finish(std::mem::take(&mut answered));
                log!("pg_callback worker: extension pg_callback was dropped; exiting");
                return;
            };
            shared::worker_claimed(claimed.len());
            events_left = left != Left::Nothing;
            other_renderer = (left == Left::OtherRenderer).then(Instant::now);
            more = claimed.len() == wanted || left == Left::More;
            // A short claim may have passed over callbacks given back since: start over next time.
            cursor = if more {
                claimed
                    .iter()
                    .map(|c| (c.due, c.id))
                    .max_by(|a, b| a.partial_cmp(b).expect("no NaN"))
            } else {
                None
            };
            let now = Instant::now();
            for c in claimed {
                let release_at = now + c.lease.mul_f64(0.5);
                work.add(c.id, &c.url.clone(), release_at, c);
            }
        }
        for c in work.to_send(limits()) {
            pool.submit(request(c));
        }
        if !work.is_empty() || !answered.is_empty() {
            idle_since = Instant::now();
            if due(&mut last_purge, PURGE_EVERY) {
                purge();
            }
            if due(&mut last_sweep, SWEEP_EVERY) {
                more |= sweep();
            }
            report(false, &format!("sending callbacks ({} in flight)", work.in_flight()));
            shared::worker_in_flight(work.in_flight());
            // Back at once for an answer; after TICK otherwise, for new callbacks and writes.
            next_answer = pool.next(TICK);
            continue;
        }
        if more {
            continue;
        }
        if other_renderer.is_some() || woken_at.is_some_and(|at| at.elapsed() < STREAM) {
            shared::polling(true);
            BackgroundWorker::wait_latch(Some(TICK));
            continue;
        }
        // Asleep until woken: said before the last look at the flag.
        shared::polling(false);
        if shared::wake_wanted() {
            continue;
        }
        let next_due = BackgroundWorker::transaction(|| Spi::get_one::<f64>(NEXT_DUE).ok().flatten());
        let idle_limit = Duration::from_millis(guc::IDLE_EXIT_MS.get().max(0) as u64);
        let idle_for = idle_since.elapsed();
        if idle_for >= idle_limit {
            if due(&mut last_purge, PURGE_EVERY) {
                purge();
            }
            shared::set_next_due_ms(next_due.map(|ms| ms as i64).unwrap_or(i64::MAX));
            if shared::wake_wanted() {
                continue;
            }
            // A last look before leaving: nothing waiting may be left without a worker.
            if sweep() {
                more = true;
                continue;
            }
            return;
        }
        let mut wait = idle_limit - idle_for;
        if let Some(due) = next_due {
            let until_due = Duration::from_millis((due as i64 - shared::now_ms()).max(1) as u64);
            more = until_due <= wait;
            wait = wait.min(until_due);
        }
        report(false, "waiting for callbacks");
        BackgroundWorker::wait_latch(Some(wait));
    }
}

/// Whether something last done at `last` (never: None) is due again after `every`; if so,
/// it counts as done now.
fn due(last: &mut Option<Instant>, every: Duration) -> bool {
    let due = last.is_none_or(|t| t.elapsed() >= every);
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// Lets go the waiting callbacks whose release was missed (sweep.sql); whether there were any.
fn sweep() -> bool {
    let swept = BackgroundWorker::transaction(|| match extension_installed() {
        true => Spi::connect_mut(|client| client.update(SWEEP, None, &[]).map(|t| t.len())),
        false => Ok(0),
    });
    swept.unwrap_or_else(|e| {
        warning!("pg_callback worker: releasing waiting callbacks: {e}");
        0
    }) > 0
}

/// Deletes delivered callbacks older than `pg_callback.retention`, with their history, a batch
/// per transaction (a few batches at most, so a worker never lingers on it).
fn purge() {
    let retention = guc::RETENTION_S.get();
    if retention <= 0 {
        return;
    }
    report(true, "deleting delivered callbacks past retention");
    for _ in 0..10 {
        let purged = BackgroundWorker::transaction(|| {
            Spi::get_one_with_args::<i64>(PURGE, &[f64::from(retention).into(), PURGE_BATCH.into()])
        });
        match purged {
            Ok(Some(n)) if n == PURGE_BATCH => continue,
            Ok(_) => return,
            Err(e) => {
                warning!("pg_callback worker: retention: {e}");
                return;
            }
        }
    }
}

/// What a claim's rendering may have left of the events recorded.
#[derive(PartialEq)]
enum Left {
    Nothing,
    /// It rendered a full batch.
    More,
    /// Another worker was rendering: what that one took may not include events whose flag
    /// this worker lowered.
    OtherRenderer,
}

/// Renders recorded events into callbacks (if `render`), then claims up to `wanted` callbacks,
/// none of the hosts in `full`, after `cursor` (due time and id of the last one claimed). Also
/// says what events may be left to render. None when the extension of `schema` is gone
/// (even if created again since).
fn claim(
    schema: pg_sys::Oid,
    render: bool,
    wanted: usize,
    full: Vec<String>,
    cursor: Option<(f64, i64)>,
) -> Option<(Vec<Claimed>, Left)> {
    if !extension_installed() || callback_schema() != schema {
        return None;
    }
    let batch = guc::BATCH_SIZE.get().max(1);
    let in_flight = guc::MAX_IN_FLIGHT.get().max(1);
    // The lease covers two batches' rounds of requests: one to wait for a free thread, one to send.
    let rounds = 2 * ((batch + in_flight - 1) / in_flight);
    let default_timeout = f64::from(guc::DEFAULT_TIMEOUT_MS.get()) / 1000.0;
    let args = [
        (wanted as i32).into(),
        my_pid().into(),
        rounds.into(),
        default_timeout.into(),
        full.into(),
        cursor.map_or(0.0, |(due, _)| due).into(),
        cursor.map_or(0, |(_, id)| id).into(),
    ];
    // What callback._expand_events() runs, called directly.
    let expanded = (render && record::has_events_table()).then(|| record::expand_events(EXPAND_BATCH));
    let claimed = Spi::connect_mut(|client| {
        let claimed = plans::with(&PLANS, client, prepare, |client, plans| {
            claimed_rows(client, plans, &args, schema, default_timeout)
        })?;
        let left = match expanded {
            Some(EXPAND_BATCH) => Left::More,
            Some(-1) => Left::OtherRenderer,
            _ => Left::Nothing,
        };
        Ok::<_, pgrx::spi::Error>((claimed, left))
    });
    match claimed {
        Ok(claimed) => Some(claimed),
        Err(e) => error!("pg_callback worker: claiming callbacks failed: {e}"),
    }
}

/// Runs the claim and reads what it returned.
fn claimed_rows(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    args: &[DatumWithOid<'_>],
    schema: pg_sys::Oid,
    default_timeout: f64,
) -> SpiResult<Vec<Claimed>> {
    // Its plan is kept, unlike the worker's other statements (see `run`): planning it cost
    // more than running it, a claim per few events under a stream of single commits. Its
    // shape holds whatever the statistics say: the due index walked in order (sorts are off),
    // the claimed rows found by id (sequential scans off, for a queue that looked empty when
    // it was planned).
    let generic = [(c"plan_cache_mode", c"force_generic_plan"), (c"enable_seqscan", c"off")];
    let rows = plans::with_settings(&generic, || client.update(&plans.claim, None, args))?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let policies = policies(client, default_timeout)?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get_by_name("retry_policy")?.unwrap_or_default();
        let (policy, timeout) = policies
            .get(&name)
            .cloned()
            .unwrap_or_else(|| (Rc::new(fallback_policy()), Duration::from_secs(30)));
        claimed.push(Claimed {
            id: row.get_by_name("id")?.unwrap_or_default(),
            webhook_id: row.get_by_name("webhook_id")?.unwrap_or_default(),
            post: row.get_by_name("post")?.unwrap_or(true),
            url: row.get_by_name("url")?.unwrap_or_default(),
            headers: row.get_by_name("headers")?.unwrap_or_default(),
            body: row.get_by_name("body")?,
            auth_header: row.get_by_name("auth_header")?,
            signing_secret: row.get_by_name("signing_secret")?,
            attempts: row.get_by_name::<i32, _>("attempts")?.unwrap_or(1).max(1) as u32,
            policy,
            timeout,
            schema,
            due: row.get_by_name("due")?.unwrap_or(0.0),
            lease: Duration::from_secs_f64(row.get_by_name::<f64, _>("lease_seconds")?.unwrap_or(60.0).max(0.0)),
        });
    }
    Ok(claimed)
}

/// Every retry policy by name, with its HTTP timeout.
fn policies(
    client: &mut pgrx::spi::SpiClient<'_>,
    default_timeout: f64,
) -> SpiResult<HashMap<String, (Rc<Policy>, Duration)>> {
    let seconds = |s: Option<f64>| Duration::from_secs_f64(s.unwrap_or(0.0).max(0.0));
    let mut policies = HashMap::new();
    for row in client.select(POLICIES, None, &[default_timeout.into()])? {
        let kind: String = row.get_by_name("kind")?.unwrap_or_default();
        let policy = Policy {
            kind: Kind::parse(&kind).unwrap_or(Kind::Fixed),
            max_attempts: row.get_by_name::<i32, _>("max_attempts")?.unwrap_or(1).max(1) as u32,
            step: seconds(row.get_by_name("step")?),
            cap: seconds(row.get_by_name("cap")?),
            jitter: row.get_by_name("jitter")?.unwrap_or(0.0),
            intervals: row
                .get_by_name::<Vec<f64>, _>("intervals")?
                .unwrap_or_default()
                .into_iter()
                .map(|s| seconds(Some(s)))
                .collect(),
            exactly_200: row.get_by_name("exactly_200")?.unwrap_or(false),
        };
        let name: String = row.get_by_name("name")?.unwrap_or_default();
        policies.insert(name, (Rc::new(policy), seconds(row.get_by_name("timeout")?)));
    }
    Ok(policies)
}

/// Used only if a callback names a policy that no longer exists (deleting one in use is refused).
fn fallback_policy() -> Policy {
    Policy {
        kind: Kind::Fixed,
        max_attempts: 1,
        step: Duration::ZERO,
        cap: Duration::ZERO,
        jitter: 0.0,
        intervals: Vec::new(),
        exactly_200: false,
    }
}

/// The request for a claimed callback, signed now when it has a secret.
fn request(c: &Claimed) -> Request {
    let mut headers: Vec<(String, String)> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&c.headers)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| value.as_str().map(|v| (name, v.to_string())))
            .collect();
    if let Some(auth) = &c.auth_header {
        headers.push(("Authorization".into(), auth.clone()));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    headers.push(("webhook-id".into(), c.webhook_id.clone()));
    headers.push(("webhook-timestamp".into(), now.to_string()));
    if let Some(secret) = &c.signing_secret {
        let body = c.body.as_deref().unwrap_or("").as_bytes();
        if let Some(signed) = signing::sign(secret, &c.webhook_id, now, body) {
            headers.push(("webhook-signature".into(), signed.signature));
        }
    }
    Request {
        key: c.id,
        post: c.post,
        url: c.url.clone(),
        headers,
        body: c.body.clone(),
        timeout: c.timeout,
        excerpt_bytes: guc::RESPONSE_EXCERPT_BYTES.get().max(0) as usize,
    }
}

/// A number in [0, 1) for jitter, from the standard library's randomly keyed hasher.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(shared::now_ms() as u64);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The columns of finish.sql, one entry per claimed callback.
#[derive(Default)]
struct Results {
    ids: Vec<i64>,
    attempts: Vec<i32>,
    started: Vec<f64>,
    duration_ms: Vec<f64>,
    http_status: Vec<Option<i32>>,
    excerpt: Vec<Option<String>>,
    error: Vec<Option<String>>,
    verdict: Vec<&'static str>,
    wait: Vec<Option<f64>>,
}

impl Results {
    fn push(&mut self, c: &Claimed, answer: Option<&Response>) {
        self.ids.push(c.id);
        self.attempts.push(c.attempts as i32);
        let Some(r) = answer else {
            self.started.push(0.0);
            self.duration_ms.push(0.0);
            self.http_status.push(None);
            self.excerpt.push(None);
            self.error.push(None);
            self.verdict.push("released");
            self.wait.push(None);
            return;
        };
        self.started.push(
            r.started
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        self.duration_ms.push(r.duration.as_secs_f64() * 1000.0);
        self.http_status.push(r.status.map(i32::from));
        self.excerpt.push(r.excerpt.clone());
        let attempt = Attempt {
            status: r.status,
            retry_after: r.retry_after,
        };
        let (verdict, wait) = match judge(&c.policy, c.attempts, &attempt, guc::TIME_SCALE.get(), random_unit()) {
            Verdict::Delivered => ("delivered", None),
            Verdict::Retry(wait) => ("retry", Some(wait.as_secs_f64())),
            Verdict::Failed => ("failed", None),
        };
        let refused = match r.status {
            Some(status) if verdict != "delivered" => Some(format!("HTTP {status} is not a success")),
            _ => None,
        };
        self.error.push(r.error.clone().or(refused));
        self.verdict.push(verdict);
        self.wait.push(wait);
    }
}

/// Writes results in one transaction: history, new states, campaigns to disable. A callback
/// with no answer is released unsent.
fn finish(done: Vec<(Claimed, Option<Response>)>) {
    if done.is_empty() {
        return;
    }
    let unsent = done.iter().any(|(_, answer)| answer.is_none());
    report(true, "writing delivery results");
    let verdicts = BackgroundWorker::transaction(move || {
        if !extension_installed() {
            return Vec::new();
        }
        let schema = callback_schema();
        let mut results = Results::default();
        for (c, answer) in done.iter().filter(|(c, _)| c.schema == schema) {
            results.push(c, answer.as_ref());
        }
        if results.ids.is_empty() {
            return Vec::new();
        }
        let verdicts = results.verdict.clone();
        let args = [
            results.ids.into(),
            results.attempts.into(),
            results.started.into(),
            results.duration_ms.into(),
            results.http_status.into(),
            results.excerpt.into(),
            results.error.into(),
            results.verdict.into(),
            results.wait.into(),
            my_pid().into(),
        ];
        let written = Spi::connect_mut(|client| {
            plans::with(&PLANS, client, prepare, |client, plans| {
                let mut failed = Vec::new();
                let mut keys = Vec::new();
                for row in client.update(&plans.finish, None, &args)? {
                    if row.get_by_name::<bool, _>("failed")?.unwrap_or(false) {
                        failed.push(row.get_by_name::<i64, _>("id")?.unwrap_or_default());
                    }
                    keys.push(row.get_by_name::<String, _>("order_key")?.unwrap_or_default());
                }
                if !keys.is_empty() {
                    client.update(&plans.release, None, &[keys.into()])?;
                }
                if !failed.is_empty() {
                    client.update(AFTER_FAILURE, None, &[failed.into()])?;
                }
                Ok(())
            })
        });
        if let Err(e) = written {
            error!("pg_callback worker: writing delivery results failed: {e}");
        }
        verdicts
    });
    let count = |verdict: &str| verdicts.iter().filter(|v| **v == verdict).count() as u64;
    shared::worker_wrote(count("delivered"), count("retry"), count("failed"));
    // SAFETY: outside any transaction, as pgstat requires.
    unsafe { pg_sys::pgstat_report_stat(false) };
    if unsent {
        // Callbacks released unsent (now committed) are due again at once: have the launcher
        // start a worker for them.
        shared::set_next_due_ms(shared::now_ms());
    }
}
