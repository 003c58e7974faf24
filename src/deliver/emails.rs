//! Alert emails as a worker sends them (sql/emails.sql): at most once a second, and whenever
//! outcomes are in, it writes what became of those it sent, then leases the ones due and hands
//! them to its mail thread (pg_callback_core::mail), which talks to the relay while the worker
//! goes on delivering callbacks. With no relay set, each is marked not sent, saying why (and
//! the worker says so once in the log).
//!
//! In: due rows of callback.alert_emails with their alert. Out: emails to the relay; their rows
//! sent, due again, failed or not sent. SQL: sql/worker/emails_claim.sql, emails_write.sql.

use crate::api::settings as guc;
use crate::pg::spi;
use pg_callback_core::mail::{compose, AlertFacts, Email, Mailer, Outcome};
use pg_callback_core::tls;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const CLAIM: &str = include_str!("../../sql/worker/emails_claim.sql");
const WRITE: &str = include_str!("../../sql/worker/emails_write.sql");

/// How often a worker looks for due emails.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Emails leased at a time.
const BATCH: i32 = 20;
const NO_RELAY: &str = "not sent: no SMTP relay is set (pg_callback.smtp_host)";

/// A worker's emails: its mail thread (for the relay the settings name) and those on it.
#[derive(Default)]
pub struct Emails {
    mailer: Option<Mailer>,
    /// Key (the email's id): its account and the attempts made.
    sending: HashMap<i64, (i64, i32)>,
    last_look: Option<Instant>,
    /// What this worker last said in the log of emails (that no relay is set, or what is wrong
    /// with it): said once, not at every look.
    said: Option<String>,
}

/// What to write of one email.
struct Written {
    account_id: i64,
    id: i64,
    error: Option<String>,
    verdict: &'static str,
    wait: Option<f64>,
}

impl Emails {
    /// Whether emails are on their way: the worker keeps turning (and does not leave) until
    /// their outcomes are written.
    pub fn busy(&self) -> bool {
        !self.sending.is_empty()
    }

    /// Writes the outcomes in, then (at most once per LOOK_EVERY, unless `now`) sends the
    /// emails due.
    pub fn turn(&mut self, extension: pg_sys::Oid, now: bool) {
        let outcomes: Vec<Outcome> = match &self.mailer {
            Some(mailer) => std::iter::from_fn(|| mailer.next()).collect(),
            None => Vec::new(),
        };
        let look = now || self.last_look.is_none_or(|at| at.elapsed() >= LOOK_EVERY);
        if outcomes.is_empty() && !look {
            return;
        }
        let mut written: Vec<Written> = outcomes.into_iter().filter_map(|o| self.judged(o)).collect();
        if look {
            self.last_look = Some(Instant::now());
            if self.sending.is_empty() {
                self.renew_mailer();
            }
        }
        // Without a mail thread, what is due is marked not sent, saying why.
        let not_sent = match (&self.mailer, guc::relay()) {
            (Some(_), _) => None,
            (None, None) => Some(NO_RELAY.to_string()),
            (None, Some(_)) => Some(
                self.said
                    .clone()
                    .unwrap_or_else(|| "the SMTP relay's settings cannot work".into()),
            ),
        };
        let (claimed, marked) = BackgroundWorker::transaction(move || {
            // The extension locked against DROP EXTENSION first, as every worker transaction.
            if !super::same_extension(extension) || !spi::has_column(c"alert_emails", c"address") {
                return (Vec::new(), 0);
            }
            // An email sent is not sent again because a crash undid its record.
            spi::commit_durably();
            let done = Spi::connect_mut(|client| {
                let claimed = if look { claim(client)? } else { Vec::new() };
                if let Some(error) = &not_sent {
                    written.extend(claimed.iter().map(|c| Written {
                        account_id: c.account_id,
                        id: c.id,
                        error: Some(error.clone()),
                        verdict: "not_sent",
                        wait: None,
                    }));
                }
                write(client, &written)?;
                Ok::<_, pgrx::spi::SpiError>(match not_sent {
                    Some(_) => (Vec::new(), claimed.len()),
                    None => (claimed, 0),
                })
            });
            done.unwrap_or_else(|e| {
                warning!("pg_callback worker: alert emails: {e}");
                (Vec::new(), 0)
            })
        });
        if marked > 0 && guc::relay().is_none() {
            self.say(format!("pg_callback worker: alert emails are {NO_RELAY}"));
        }
        if let Some(mailer) = &self.mailer {
            for c in claimed {
                let (subject, body) = compose(&c.facts);
                mailer.submit(Email {
                    key: c.id,
                    to: c.address,
                    subject,
                    body,
                });
                self.sending.insert(c.id, (c.account_id, c.attempts));
            }
        }
    }

    /// A mail thread for the relay the settings name now, when that changed.
    fn renew_mailer(&mut self) {
        let relay = guc::relay();
        if self.mailer.as_ref().map(|m| m.relay()) == relay.as_ref() {
            return;
        }
        self.mailer = None;
        let Some(relay) = relay else { return };
        let (roots, _) = tls::roots(&guc::trust());
        let roots: Vec<Vec<u8>> = roots.iter().map(|c| c.der().to_vec()).collect();
        match Mailer::new(relay, &roots) {
            Ok(mailer) => self.mailer = Some(mailer),
            Err(e) => self.say(format!("pg_callback worker: alert emails cannot be sent: {e}")),
        }
    }

    /// Logs `what` unless it was the last thing this worker said of emails.
    fn say(&mut self, what: String) {
        if self.said.as_ref() != Some(&what) {
            log!("{what}");
            self.said = Some(what);
        }
    }

    /// What to write of an outcome: sent, due again after the policy's wait, or failed.
    fn judged(&mut self, outcome: Outcome) -> Option<Written> {
        let (account_id, attempts) = self.sending.remove(&outcome.key)?;
        let (verdict, wait) = match (&outcome.error, outcome.permanent) {
            (None, _) => ("sent", None),
            (Some(_), true) => ("failed", None),
            (Some(_), false) => match super::retry_policy().wait(attempts.max(1) as u32, 0.0) {
                Some(wait) => ("retry", Some(wait.as_secs_f64() * guc::TIME_SCALE.get())),
                None => ("failed", None),
            },
        };
        Some(Written {
            account_id,
            id: outcome.key,
            error: outcome.error,
            verdict,
            wait,
        })
    }
}

/// An email leased to this worker, with its alert.
struct Claimed {
    account_id: i64,
    id: i64,
    address: String,
    attempts: i32,
    facts: AlertFacts,
}

/// Leases the emails due (emails_claim.sql).
fn claim(client: &mut SpiClient<'_>) -> SpiResult<Vec<Claimed>> {
    let lease = 2.0 * f64::from(guc::DEFAULT_TIMEOUT_MS.get().max(1)) / 1000.0 + 60.0;
    let mut claimed = Vec::new();
    for row in client.update(CLAIM, None, &[BATCH.into(), lease.into()])? {
        let account_id: i64 = row.get_by_name("account_id")?.unwrap_or_default();
        claimed.push(Claimed {
            account_id,
            id: row.get_by_name("id")?.unwrap_or_default(),
            address: row.get_by_name("address")?.unwrap_or_default(),
            attempts: row.get_by_name("attempts")?.unwrap_or(1),
            facts: AlertFacts {
                alert_id: row.get_by_name("alert_id")?.unwrap_or_default(),
                account_id,
                campaign_id: row.get_by_name("campaign_id")?.unwrap_or_default(),
                campaign_name: row.get_by_name("campaign_name")?.unwrap_or_default(),
                raised_at: row.get_by_name("raised_at")?.unwrap_or_default(),
                callback_id: row.get_by_name("callback_id")?,
                event: row.get_by_name("event")?,
                url: row.get_by_name("url")?,
                attempts: row.get_by_name("callback_attempts")?,
                last_http_status: row.get_by_name("last_http_status")?,
                last_error: row.get_by_name("last_error")?,
            },
        });
    }
    Ok(claimed)
}

fn write(client: &mut SpiClient<'_>, written: &[Written]) -> SpiResult<()> {
    if written.is_empty() {
        return Ok(());
    }
    let args = [
        written.iter().map(|w| w.account_id).collect::<Vec<_>>().into(),
        written.iter().map(|w| w.id).collect::<Vec<_>>().into(),
        written.iter().map(|w| w.error.clone()).collect::<Vec<_>>().into(),
        written.iter().map(|w| w.verdict).collect::<Vec<_>>().into(),
        written.iter().map(|w| w.wait).collect::<Vec<_>>().into(),
    ];
    client.update(WRITE, None, &args)?;
    Ok(())
}
