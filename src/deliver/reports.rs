//! Campaign reports to object storage (sql/reports.sql): at most once a second a worker leases
//! a report that is due, reads its CSV lines with a cursor and uploads them a part at a time
//! (pg_callback_core::report: never the whole file in memory), then records campaign.complete
//! with the link, in the transaction that read them. A failure is retried (10 attempts, waits
//! doubling from 30 s to an hour, times pg_callback.time_scale); a permanent one, or the last,
//! records campaign.complete with report_url null and why. The upload runs on the worker's
//! main thread: its callbacks wait meanwhile (a report of a million recipients is ~100 MB).
//!
//! In: due rows of callback.campaign_reports. Out: objects in the bucket; callback._report_done.
//! SQL: sql/worker/reports_claim.sql, reports_retry.sql.

use crate::api::settings as guc;
use crate::pg::spi;
use pg_callback_core::report::{object_key, Failure, Storage, Upload};
use pg_callback_core::tls;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};
use std::time::{Duration, Instant};

const CLAIM: &str = include_str!("../../sql/worker/reports_claim.sql");
const RETRY: &str = include_str!("../../sql/worker/reports_retry.sql");
const LINES: &str = "SELECT line FROM callback._campaign_report_lines($1) AS line";
const DONE: &str = "SELECT callback._report_done($1, $2, $3, $4, $5, $6)";

/// How often a worker looks for a due report.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Report lines read at a time.
const FETCH: i64 = 10_000;

/// A report leased to this worker.
struct Leased {
    account_id: i64,
    campaign_id: i64,
    attempts: i32,
}

/// A worker's side of campaign reports: when it last looked for one due.
#[derive(Default)]
pub struct Reports {
    last_look: Option<Instant>,
}

impl Reports {
    /// Uploads the next report due, if any (at most once per LOOK_EVERY, unless `now`).
    pub fn turn(&mut self, extension: pg_sys::Oid, now: bool) {
        if !now && self.last_look.is_some_and(|at| at.elapsed() < LOOK_EVERY) {
            return;
        }
        self.last_look = Some(Instant::now());
        let lease = 4.0 * f64::from(guc::DEFAULT_TIMEOUT_MS.get().max(1)) / 1000.0 + 600.0;
        let leased = BackgroundWorker::transaction(|| {
            // The extension locked against DROP EXTENSION first, as every worker transaction.
            if !super::same_extension(extension) || !spi::has_column(c"campaign_reports", c"complete_data") {
                return None;
            }
            Spi::connect_mut(|client| {
                let table = client.update(CLAIM, Some(1), &[lease.into()])?;
                if table.is_empty() {
                    return Ok(None);
                }
                let row = table.first();
                Ok::<_, pgrx::spi::SpiError>(Some(Leased {
                    account_id: row.get_by_name("account_id")?.unwrap_or_default(),
                    campaign_id: row.get_by_name("campaign_id")?.unwrap_or_default(),
                    attempts: row.get_by_name("attempts")?.unwrap_or(1),
                }))
            })
            .unwrap_or_else(|e| {
                warning!("pg_callback worker: campaign reports: {e}");
                None
            })
        });
        let Some(report) = leased else { return };
        super::report(true, "uploading a campaign report");
        BackgroundWorker::transaction(move || {
            if !super::same_extension(extension) {
                return;
            }
            // campaign.complete is recorded once, with its link.
            spi::commit_durably();
            let written = Spi::connect_mut(|client| upload_and_record(client, &report));
            if let Err(e) = written {
                warning!(
                    "pg_callback worker: campaign report of campaign {}: {e}",
                    report.campaign_id
                );
            }
        });
    }
}

/// Uploads the report and records what came of it.
fn upload_and_record(client: &mut SpiClient<'_>, report: &Leased) -> SpiResult<()> {
    let Some(storage) = guc::storage() else {
        let error = "no report storage is set (pg_callback.report_bucket)";
        return done(client, report, None, Some(error.into()), None, None);
    };
    let key = object_key(&storage.prefix, report.account_id, report.campaign_id);
    match upload(client, &storage, &key, report.campaign_id)? {
        Ok(bytes) => match storage.link(&key) {
            Ok(link) => done(client, report, Some(link), None, Some(key), Some(bytes as i64)),
            Err(f) => failed(client, report, f),
        },
        Err(f) => failed(client, report, f),
    }
}

/// Streams the report's lines into object `key`: its size, or why it could not be written.
fn upload(
    client: &mut SpiClient<'_>,
    storage: &Storage,
    key: &str,
    campaign_id: i64,
) -> SpiResult<Result<u64, Failure>> {
    let (roots, _) = tls::roots(&guc::trust());
    let mut upload = match Upload::new(storage, key, &roots) {
        Ok(upload) => upload,
        Err(f) => return Ok(Err(f)),
    };
    let mut cursor = client.open_cursor(LINES, &[campaign_id.into()]);
    loop {
        let mut lines = 0;
        for row in cursor.fetch(FETCH)? {
            lines += 1;
            let line: String = row.get(1)?.unwrap_or_default();
            if let Err(f) = upload.write(line.as_bytes()) {
                upload.abort();
                return Ok(Err(f));
            }
        }
        // SAFETY: the batch just read is not used any more; SPI would keep it until the end.
        unsafe { pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable) };
        if lines < FETCH {
            break;
        }
    }
    Ok(upload.finish())
}

/// A failed attempt: retried after the policy's wait, or the last word when it was permanent
/// or the last attempt.
fn failed(client: &mut SpiClient<'_>, report: &Leased, failure: Failure) -> SpiResult<()> {
    let wait = match failure.permanent {
        true => None,
        false => super::retry_policy().wait(report.attempts.max(1) as u32, 0.0),
    };
    match wait {
        Some(wait) => {
            let seconds = wait.as_secs_f64() * guc::TIME_SCALE.get();
            let args = [
                report.account_id.into(),
                report.campaign_id.into(),
                seconds.into(),
                failure.error.into(),
            ];
            client.update(RETRY, None, &args)?;
            Ok(())
        }
        None => done(client, report, None, Some(failure.error), None, None),
    }
}

fn done(
    client: &mut SpiClient<'_>,
    report: &Leased,
    url: Option<String>,
    error: Option<String>,
    key: Option<String>,
    bytes: Option<i64>,
) -> SpiResult<()> {
    let args = [
        report.account_id.into(),
        report.campaign_id.into(),
        url.into(),
        error.into(),
        key.into(),
        bytes.into(),
    ];
    client.update(DONE, None, &args)?;
    Ok(())
}
