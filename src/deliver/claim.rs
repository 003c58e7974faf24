//! Claiming: due callbacks leased to this worker a batch at a time, in one short transaction
//! that first renders events recorded for later (src/render/expand.rs), leasing to itself
//! those it has room for as it inserts them (the claim statement then only reads them).
//!
//! In: how many are wanted, the endpoints this worker has enough of, where the last claim ended.
//! Out: `Claimed` callbacks with their retry policy; what events may be left to render; where
//! the next claim starts.
//! SQL: sql/worker/claim.sql, sql/worker/policies.sql.

use super::{health, identities, same_extension};
use crate::api::settings as guc;
use crate::pg::spi::{self, types, Kept};
use crate::render::{self, expand};
use pg_callback_core::callback;
use pg_callback_core::dispatch::Pace;
use pg_callback_core::http::Identity;
use pg_callback_core::retry::{Kind, Policy};
use pg_callback_core::scan::{Position, Read};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

const CLAIM: &str = include_str!("../../sql/worker/claim.sql");
const COMPAT_CLAIM: &str = include_str!("../../sql/compat/claim.sql");
const WINDOW: &str = include_str!("../../sql/worker/claim_window.sql");
const POLICIES: &str = include_str!("../../sql/worker/policies.sql");
const LIMITS: &str = include_str!("../../sql/worker/limits.sql");

/// Events recorded with pg_callback.recording = deferred are rendered into callbacks at the
/// start of a claim (when a commit stored some since the last), this many at most, and claimed
/// in the same transaction.
const EXPAND_BATCH: i32 = 1000;

/// A claim that skips endpoints reads at most this many batches' worth of the queue.
const WINDOW_BATCHES: usize = 4;

/// The claim runs thousands of times a second, parsed once (src/pg/spi.rs), and the retry
/// policies are read after each that took callbacks; the window before a claim that skips
/// endpoints (none for a schema of 0.2.0 or older).
struct Plans {
    claim: OwnedPreparedStatement,
    policies: OwnedPreparedStatement,
    window: Option<OwnedPreparedStatement>,
}

thread_local! {
    static PLANS: Kept<Plans> = const { RefCell::new(None) };
}

fn prepare(client: &mut SpiClient<'_>) -> SpiResult<Plans> {
    let split = spi::split_callbacks();
    let args = [
        "int", "int", "int", "float8", "text[]", "float8", "bigint", "bigint[]", "float8", "bigint",
    ];
    let args = if split { &args[..] } else { &args[..8] };
    Ok(Plans {
        claim: client.prepare_mut(&claim_sql(), &types(args))?.keep(),
        policies: client.prepare(POLICIES, &types(&["float8"]))?.keep(),
        window: match split {
            true => Some(client.prepare(WINDOW, &types(&["float8", "bigint", "int"]))?.keep()),
            false => None,
        },
    })
}

/// claim.sql; for a schema of 0.2.0 or older, until `ALTER EXTENSION pg_callback UPDATE` splits
/// the callbacks and adds the endpoint column and the secrets' overlaps, sql/compat/claim.sql
/// without them: no endpoint is skipped, each callback's endpoint is computed from its URL
/// when it is claimed, and no secret overlaps.
fn claim_sql() -> String {
    if spi::split_callbacks() {
        return CLAIM.to_string();
    }
    let mut claim = COMPAT_CLAIM.to_string();
    if !spi::has_column(c"callbacks", c"endpoint") {
        claim = claim
            .replace("c.endpoint <> ALL ($5::text[])", "true")
            .replace("c.endpoint,", "NULL::text AS endpoint,");
    }
    // No secrets to rotate before 0.3.0 either, nor client certificates.
    if !spi::has_column(c"signing_secret_overlaps", c"secret") {
        for (from, to) in [
            ("CASE WHEN c.signing_secret", "AS other_secrets"),
            (
                "CASE WHEN (SELECT true FROM callback.client_certificates",
                "AS client_certificate,",
            ),
        ] {
            if let (Some(start), Some(end)) = (claim.find(from), claim.find(to)) {
                claim.replace_range(start..end, "NULL ");
            }
        }
    }
    claim
}

/// A claimed callback, with everything needed to send it and judge the answer.
pub struct Claimed {
    pub id: i64,
    pub account_id: i64,
    pub webhook_id: String,
    pub post: bool,
    pub url: String,
    /// Its endpoint (scheme, host and port), whose limits it is sent within.
    pub endpoint: String,
    pub headers: String,
    pub body: Option<String>,
    pub auth_header: Option<String>,
    pub signing_secret: Option<String>,
    /// Secrets in their rotation overlap with `signing_secret`: requests carry their signatures too.
    pub other_secrets: Vec<String>,
    /// The client certificate it presents when the receiver asks for one.
    pub identity: Option<Identity>,
    pub attempts: u32,
    pub policy: Rc<Policy>,
    pub timeout: Duration,
    /// How long its lease lasts from the claim: it is given back unsent after half of that.
    pub lease: Duration,
    /// The requests-per-second limits it is sent within (sql/limits.sql), as this worker's share.
    pub paces: Vec<Pace>,
    /// When it was due (Unix seconds): with the id, where the next claim starts.
    pub due: f64,
    /// The installation it was claimed from: if the extension is dropped and created again
    /// meanwhile, its result is not written (its id may name a new callback).
    pub extension: pg_sys::Oid,
}

/// What a claim's rendering may have left of the events recorded.
#[derive(PartialEq)]
pub enum Left {
    Nothing,
    /// It rendered a full batch.
    More,
    /// Another worker was rendering: what that one took may not include events whose flag
    /// this worker lowered.
    OtherRenderer,
}

/// What a claim asks for.
pub struct Wanted {
    /// Render recorded events first, and make the batches due (src/render/batches.rs).
    pub render: bool,
    /// Claim at most this many.
    pub count: usize,
    /// Skip these endpoints: this worker has as many of their callbacks as it can send soon.
    pub full_endpoints: Vec<String>,
    /// Where to start, and whether to read at most a window when skipping endpoints.
    pub read: Read,
}

impl Wanted {
    /// Whether the claim skips endpoints (and may then read a window: core/src/scan.rs).
    pub fn skipping(&self) -> bool {
        !self.full_endpoints.is_empty()
    }
}

/// What a claim took.
pub struct Claim {
    /// The callbacks the claim statement took, then those rendered and leased in it.
    pub claimed: Vec<Claimed>,
    pub left: Left,
    /// The claim statement took as many as it was asked for: more may be due after them.
    pub full: bool,
    /// The due time and id of the last callback the claim statement took.
    pub last: Option<Position>,
    /// Where the window it read ended, when that was before the end of the queue.
    pub window_end: Option<Position>,
}

/// Renders recorded events (if asked), leasing to this worker those of them it has room for,
/// then claims due callbacks for the rest of what is wanted. None when installation
/// `extension` is gone (even if created again since). A failing statement raises an error, which
/// ends the worker with its cause logged; its claimed callbacks are released by the next one.
pub fn claim(extension: pg_sys::Oid, wanted: Wanted) -> Option<Claim> {
    if !same_extension(extension) {
        return None;
    }
    let batch = guc::BATCH_SIZE.get().max(1);
    let in_flight = guc::MAX_IN_FLIGHT.get().max(1);
    // The lease covers two batches' rounds of requests: one to wait for a free thread, one to send.
    let rounds = 2 * ((batch + in_flight - 1) / in_flight);
    let default_timeout = f64::from(guc::DEFAULT_TIMEOUT_MS.get()) / 1000.0;
    let lease = render::Lease {
        worker: super::my_pid(),
        rounds,
        default_timeout,
        count: wanted.count,
        full_endpoints: &wanted.full_endpoints,
    };
    // What callback._expand_events() runs, called directly (a schema of 0.1.0 has no events).
    let render = wanted.render && spi::events_table() != pg_sys::InvalidOid;
    let (left, leased) = match render.then(|| expand::render_events(EXPAND_BATCH, Some(&lease))) {
        Some((EXPAND_BATCH, leased)) => (Left::More, leased),
        Some((-1, _)) => (Left::OtherRenderer, Vec::new()),
        Some((_, leased)) => (Left::Nothing, leased),
        None => (Left::Nothing, Vec::new()),
    };
    // A batch's webhook-id is random, and which events it takes depends on when it is made: a
    // crash must not undo it once its request may have gone out (the worker's other commits
    // wait for no disk: src/deliver/worker.rs).
    if render::batches_made() {
        spi::commit_durably();
    }
    let count = wanted.count.saturating_sub(leased.len());
    let after = wanted.read.after.unwrap_or((0.0, 0));
    let windowed = wanted.read.window && wanted.skipping();
    let claimed = Spi::connect_mut(|client| {
        spi::with(&PLANS, client, prepare, |client, plans| {
            let until = match &plans.window {
                Some(window) if windowed => window_end(client, window, after, batch as usize * WINDOW_BATCHES)?,
                _ => None,
            };
            let (until_due, until_id) = until.unwrap_or((f64::INFINITY, i64::MAX));
            let mut args = vec![
                (count as i32).into(),
                super::my_pid().into(),
                rounds.into(),
                default_timeout.into(),
                wanted.full_endpoints.into(),
                after.0.into(),
                after.1.into(),
                leased.into(),
            ];
            if plans.window.is_some() {
                args.extend([until_due.into(), until_id.into()]);
            }
            let (claimed, taken, last) = claimed_rows(client, plans, &args, extension, default_timeout)?;
            Ok((claimed, taken, last, until))
        })
    });
    match claimed {
        Ok((claimed, taken, last, window_end)) => Some(Claim {
            claimed,
            left,
            full: taken == count,
            last,
            window_end,
        }),
        Err(e) => error!("pg_callback worker: claiming callbacks failed: {e}"),
    }
}

/// Where a claim that skips endpoints stops reading: the `rows`-th callback it could take
/// after `after` (claim_window.sql), None when the queue ends before.
fn window_end(
    client: &mut SpiClient<'_>,
    window: &OwnedPreparedStatement,
    after: Position,
    rows: usize,
) -> SpiResult<Option<Position>> {
    let args = [
        after.0.into(),
        after.1.into(),
        (rows.clamp(1, i32::MAX as usize) as i32).into(),
    ];
    let found = spi::with_generic_plans(|| client.select(window, Some(1), &args))?;
    if found.is_empty() {
        return Ok(None);
    }
    match found.first().get_two::<f64, i64>()? {
        (Some(due), Some(id)) => Ok(Some((due, id))),
        _ => Ok(None),
    }
}

/// Runs the claim and reads what it returned: the callbacks to send, how many the claim
/// statement took, and the due time and id of its last.
fn claimed_rows(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    args: &[DatumWithOid<'_>],
    extension: pg_sys::Oid,
    default_timeout: f64,
) -> SpiResult<(Vec<Claimed>, usize, Option<Position>)> {
    // Its plan is kept, unlike most of the worker's statements (src/deliver/worker.rs): planning
    // it cost more than running it, a claim per few events under a stream of single commits.
    // Its shape holds whatever the statistics say: the due index walked in order (sorts are
    // off), the claimed rows found by id (sequential scans off, for a queue that looked empty
    // when it was planned).
    let rows = spi::with_generic_plans(|| client.update(&plans.claim, None, args))?;
    if rows.is_empty() {
        return Ok((Vec::new(), 0, None));
    }
    let policies = policies(client, &plans.policies, default_timeout)?;
    let mut claimed = Vec::with_capacity(rows.len());
    let mut certificates = Vec::with_capacity(rows.len());
    let (mut taken, mut last) = (0, None::<Position>);
    for row in rows {
        certificates.push(row.get_by_name::<Vec<i64>, _>("client_certificate")?);
        let name: String = row.get_by_name("retry_policy")?.unwrap_or_default();
        let url: String = row.get_by_name("url")?.unwrap_or_default();
        let (policy, timeout) = policies
            .get(&name)
            .cloned()
            .unwrap_or_else(|| (Rc::new(fallback_policy()), Duration::from_secs(30)));
        let c = Claimed {
            id: row.get_by_name("id")?.unwrap_or_default(),
            account_id: row.get_by_name("account_id")?.unwrap_or_default(),
            paces: Vec::new(),
            webhook_id: row.get_by_name("webhook_id")?.unwrap_or_default(),
            post: row.get_by_name("post")?.unwrap_or(true),
            url: url.clone(),
            endpoint: match row.get_by_name::<String, _>("endpoint")? {
                Some(endpoint) => endpoint,
                None => callback::endpoint(&url),
            },
            headers: row.get_by_name("headers")?.unwrap_or_default(),
            body: row.get_by_name("body")?,
            auth_header: row.get_by_name("auth_header")?,
            signing_secret: row.get_by_name("signing_secret")?,
            other_secrets: row.get_by_name("other_secrets")?.unwrap_or_default(),
            identity: None,
            attempts: row.get_by_name::<i32, _>("attempts")?.unwrap_or(1).max(1) as u32,
            policy,
            timeout,
            extension,
            due: row.get_by_name("due")?.unwrap_or(0.0),
            lease: Duration::from_secs_f64(row.get_by_name::<f64, _>("lease_seconds")?.unwrap_or(60.0).max(0.0)),
        };
        if !row.get_by_name::<bool, _>("rendered")?.unwrap_or(false) {
            taken += 1;
            // The latest by due time and id (rows come back in no particular order).
            let at = (c.due, c.id);
            if last.is_none_or(|(due, id)| due.total_cmp(&at.0).then(id.cmp(&at.1)).is_lt()) {
                last = Some(at);
            }
        }
        claimed.push(c);
    }
    pace(client, &mut claimed)?;
    identities::attach(client, &mut claimed, &certificates)?;
    Ok((health::keep_sendable(client, claimed)?, taken, last))
}

/// The limits of requests per second on one endpoint, as this worker's paces: the
/// administrator's, and accounts' own.
#[derive(Default)]
struct EndpointLimits {
    all: Option<Pace>,
    accounts: HashMap<i64, Pace>,
}

/// Every endpoint's limits.
type Limits = HashMap<String, EndpointLimits>;

/// Limits are read again after this: a change takes effect within it.
const LIMITS_KEPT_FOR: Duration = Duration::from_secs(1);

thread_local! {
    static KEPT_LIMITS: RefCell<Option<(Instant, Rc<Limits>)>> = const { RefCell::new(None) };
}

/// The limits, read at most once per LIMITS_KEPT_FOR (sql/worker/limits.sql); none before
/// 0.3.0's schema.
fn limits(client: &mut SpiClient<'_>) -> SpiResult<Rc<Limits>> {
    if let Some(kept) = KEPT_LIMITS.with_borrow(|k| {
        k.as_ref()
            .filter(|(at, _)| at.elapsed() < LIMITS_KEPT_FOR)
            .map(|(_, l)| Rc::clone(l))
    }) {
        return Ok(kept);
    }
    let mut limits = Limits::new();
    if spi::has_column(c"endpoint_limits", c"endpoint") {
        let workers = guc::WORKERS.get().max(1) as usize;
        for row in client.select(LIMITS, None, &[])? {
            let endpoint: String = row.get_by_name("endpoint")?.unwrap_or_default();
            let account: Option<i64> = row.get_by_name("account_id")?;
            let per_second: f64 = row.get_by_name("requests_per_second")?.unwrap_or(f64::MAX);
            let on = limits.entry(endpoint.clone()).or_default();
            match account {
                None => on.all = Some(Pace::share(endpoint, per_second, workers)),
                Some(account) => {
                    let pace = Pace::share(format!("{account} {endpoint}"), per_second, workers);
                    on.accounts.insert(account, pace);
                }
            }
        }
    }
    let limits = Rc::new(limits);
    KEPT_LIMITS.set(Some((Instant::now(), Rc::clone(&limits))));
    Ok(limits)
}

/// Gives each claimed callback the paces of the limits on its endpoint: the administrator's,
/// and its account's.
fn pace(client: &mut SpiClient<'_>, claimed: &mut [Claimed]) -> SpiResult<()> {
    let limits = limits(client)?;
    if limits.is_empty() {
        return Ok(());
    }
    for c in claimed {
        if let Some(on) = limits.get(&c.endpoint) {
            c.paces.extend(on.all.iter().cloned());
            c.paces.extend(on.accounts.get(&c.account_id).cloned());
        }
    }
    Ok(())
}

/// Every retry policy by name, with its HTTP timeout (`plan`: policies.sql).
fn policies(
    client: &mut SpiClient<'_>,
    plan: &OwnedPreparedStatement,
    default_timeout: f64,
) -> SpiResult<HashMap<String, (Rc<Policy>, Duration)>> {
    let seconds = |s: Option<f64>| Duration::from_secs_f64(s.unwrap_or(0.0).max(0.0));
    let mut policies = HashMap::new();
    let rows = spi::with_kept_plans(|| client.select(plan, None, &[default_timeout.into()]))?;
    for row in rows {
        let kind: String = row.get_by_name("kind")?.unwrap_or_default();
        let policy = Policy {
            // The column is an enum of exactly these kinds.
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
