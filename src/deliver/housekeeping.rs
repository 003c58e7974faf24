//! Housekeeping a worker does beside sending: leases of workers gone released at start,
//! waiting callbacks whose release was missed let go, delivered callbacks past retention
//! deleted, and the next due time found for the launcher.
//!
//! SQL: sql/worker/recover.sql (and recover_others.sql), sweep.sql, purge.sql, next_due.sql
//! (with others_next_due.sql).

use super::{extension_installed, report};
use crate::api::settings as guc;
use crate::pg::{shared, spi};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::time::{Duration, Instant};

const RECOVER: &str = include_str!("../../sql/worker/recover.sql");
const RECOVER_OTHERS: &str = include_str!("../../sql/worker/recover_others.sql");
const SWEEP: &str = include_str!("../../sql/worker/sweep.sql");
const PURGE: &str = include_str!("../../sql/worker/purge.sql");
const NEXT_DUE: &str = include_str!("../../sql/worker/next_due.sql");
const OTHERS_NEXT_DUE: &str = include_str!("../../sql/worker/others_next_due.sql");

/// Retention deletes this many delivered callbacks per transaction, at most this often (a
/// worker purges once in its life at least, when it is busy or about to leave).
const PURGE_BATCH: i64 = 10_000;
pub const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Waiting callbacks whose release was missed are let go this often while busy (sweep.sql).
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Whether something last done at `last` (never: None) is due again after `every`; if so,
/// it counts as done now.
pub fn due(last: &mut Option<Instant>, every: Duration) -> bool {
    let due = last.is_none_or(|t| t.elapsed() >= every);
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// Releases the leases of workers that no longer run, when a worker may have left some (it
/// reads the whole queue): at a worker's start, every second while it sends, and before it
/// leaves; whether it released any. A failure is logged and left for the next look.
pub fn recover() -> bool {
    if !shared::take_orphaned_leases() {
        return false;
    }
    let released = BackgroundWorker::transaction(|| {
        if !extension_installed() {
            return Ok(0);
        }
        Spi::connect_mut(|client| {
            let callbacks = client.update(RECOVER, None, &[])?.len() as i64;
            // Alert emails and campaign reports, where the schema has them (0.3.0).
            let others = match spi::has_column(c"campaign_reports", c"leased_by") {
                true => client
                    .update(RECOVER_OTHERS, None, &[])?
                    .first()
                    .get_one::<i64>()?
                    .unwrap_or(0),
                false => 0,
            };
            Ok::<_, pgrx::spi::SpiError>(callbacks + others)
        })
    });
    released.unwrap_or_else(|e| {
        shared::leases_orphaned();
        warning!("pg_callback worker: recovering leases: {e}");
        0
    }) > 0
}

/// Lets go the waiting callbacks whose release was missed (sweep.sql); whether there were any.
pub fn sweep() -> bool {
    let swept = BackgroundWorker::transaction(|| match extension_installed() {
        true => Spi::connect_mut(|client| client.update(&spi::for_queue_order(SWEEP), None, &[]).map(|t| t.len())),
        false => Ok(0),
    });
    swept.unwrap_or_else(|e| {
        warning!("pg_callback worker: releasing waiting callbacks: {e}");
        0
    }) > 0
}

/// Deletes delivered callbacks older than `pg_callback.retention`, with their history, a batch
/// per transaction (a few batches at most, so a worker never lingers on it).
pub fn purge() {
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

/// When the next retry, alert email, campaign report or lease expiry comes due (Unix
/// milliseconds); None when nothing waits for a time, or when it could not be read (logged).
pub fn next_due_ms() -> Option<f64> {
    let next = BackgroundWorker::transaction(|| {
        if !extension_installed() {
            return Ok(None);
        }
        let callbacks = Spi::get_one::<f64>(NEXT_DUE)?;
        // Alert emails and campaign reports, where the schema has them (0.3.0).
        let others = match spi::has_column(c"campaign_reports", c"leased_by") {
            true => Spi::get_one::<f64>(OTHERS_NEXT_DUE)?,
            false => None,
        };
        Ok::<_, pgrx::spi::SpiError>(callbacks.into_iter().chain(others).reduce(f64::min))
    });
    next.unwrap_or_else(|e| {
        warning!("pg_callback worker: reading when the next callback is due: {e}");
        None
    })
}
