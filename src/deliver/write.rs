//! Writing results: every attempt's outcome in one transaction per batch. The history row,
//! the callback delivered, due again after its policy's wait, or failed (and its campaign
//! disabled when the policy says so); the next waiting callback of each order key let go.
//!
//! In: claimed callbacks with their answers (None: given back unsent). Out: sql/worker/
//! finish.sql, release.sql, after_failure.sql; the worker's counts in shared memory.

use super::claim::Claimed;
use super::health;
use super::{extension_installed, my_pid, report};
use crate::api::settings as guc;
use crate::pg::shared;
use crate::pg::spi::{self, installed_extension, types, Kept};
use pg_callback_core::http::Response;
use pg_callback_core::retry::{judge, Attempt, Verdict};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::time::UNIX_EPOCH;

const FINISH: &str = include_str!("../../sql/worker/finish.sql");
const COMPAT_FINISH: &str = include_str!("../../sql/compat/finish.sql");
const RELEASE: &str = include_str!("../../sql/worker/release.sql");
const AFTER_FAILURE: &str = include_str!("../../sql/worker/after_failure.sql");

/// Written thousands of times a second, parsed once (src/pg/spi.rs) and planned at each run
/// (src/deliver/worker.rs says why).
struct Plans {
    finish: OwnedPreparedStatement,
    release: OwnedPreparedStatement,
    /// Whether the queue orders by hashes of order keys (0.3.0 on), not by the keys.
    hashed: bool,
}

thread_local! {
    static PLANS: Kept<Plans> = const { RefCell::new(None) };
}

fn prepare(client: &mut SpiClient<'_>) -> SpiResult<Plans> {
    // The accounts ($11) are the last: sql/compat/finish.sql does without them.
    let finish = [
        "bigint[]", "int[]", "float8[]", "float8[]", "int[]", "text[]", "text[]", "text[]", "float8[]", "int",
        "bigint[]",
    ];
    // A schema before 0.3.0 has no batches, until `ALTER EXTENSION pg_callback UPDATE`.
    let finish_sql = match (spi::split_callbacks(), spi::has_column(c"callbacks", c"batch_size")) {
        (true, _) => FINISH.to_string(),
        (false, true) => COMPAT_FINISH.to_string(),
        (false, false) => COMPAT_FINISH.replace(", batch_size", ""),
    };
    let hashed = spi::split_callbacks();
    Ok(Plans {
        finish: client.prepare_mut(&finish_sql, &types(&finish))?.keep(),
        release: client
            .prepare_mut(
                &spi::for_queue_order(RELEASE),
                &types(&[if hashed { "bigint[]" } else { "text[]" }]),
            )?
            .keep(),
        hashed,
    })
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
    accounts: Vec<i64>,
}

impl Results {
    fn push(&mut self, c: &Claimed, answer: Option<&Response>) {
        self.ids.push(c.id);
        self.accounts.push(c.account_id);
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
            hopeless: r.hopeless,
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
/// with no answer is released unsent. Returns the endpoints that went down (or whose probe
/// failed) with these answers.
pub fn finish(done: Vec<(Claimed, Option<Response>)>) -> Vec<String> {
    if done.is_empty() {
        return Vec::new();
    }
    let unsent = done.iter().any(|(_, answer)| answer.is_none());
    report(true, "writing delivery results");
    let (verdicts, down) = BackgroundWorker::transaction(move || {
        if !extension_installed() {
            return (Vec::new(), Vec::new());
        }
        let extension = installed_extension();
        let ours: Vec<_> = done.iter().filter(|(c, _)| c.extension == extension).collect();
        let mut results = Results::default();
        for (c, answer) in &ours {
            results.push(c, answer.as_ref());
        }
        if results.ids.is_empty() {
            return (Vec::new(), Vec::new());
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
            results.accounts.into(),
        ];
        let written = Spi::connect_mut(|client| {
            spi::with(&PLANS, client, prepare, |client, plans| {
                let mut failed = Vec::new();
                // The order keys of those done, as the queue keeps them (spi::for_queue_order).
                let (mut hashes, mut keys) = (Vec::new(), Vec::new());
                for row in client.update(&plans.finish, None, &args)? {
                    if row.get_by_name::<bool, _>("failed")?.unwrap_or(false) {
                        failed.push(row.get_by_name::<i64, _>("id")?.unwrap_or_default());
                    }
                    match plans.hashed {
                        true => hashes.push(row.get_by_name::<i64, _>("order_hash")?.unwrap_or_default()),
                        false => keys.push(row.get_by_name::<String, _>("order_key")?.unwrap_or_default()),
                    }
                }
                if !hashes.is_empty() || !keys.is_empty() {
                    let done = match plans.hashed {
                        true => hashes.into(),
                        false => keys.into(),
                    };
                    client.update(&plans.release, None, &[done])?;
                }
                if !failed.is_empty() {
                    client.update(AFTER_FAILURE, None, &[failed.into()])?;
                }
                let answered: Vec<_> = ours
                    .iter()
                    .filter_map(|(c, answer)| answer.as_ref().map(|a| (c, a)))
                    .collect();
                health::record(client, &answered)
            })
        });
        match written {
            Ok(down) => (verdicts, down),
            Err(e) => error!("pg_callback worker: writing delivery results failed: {e}"),
        }
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
    down
}
