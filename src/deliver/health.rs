//! Endpoint health as the workers keep it (pg_callback_core::health, sql/health.sql).
//!
//! In: at a claim, the callbacks claimed; at a write, the answers. Out: callbacks of a down
//! endpoint given back unsent but the one sent as its probe; each endpoint's failures counted,
//! its state changed, its callbacks parked until its next probe or let go.
//! SQL: sql/worker/endpoints*.sql, take_probe.sql, unclaim.sql, park.sql; callback._unpark.

use super::claim::Claimed;
use crate::api::settings as guc;
use crate::pg::spi::{self, Kept};
use pg_callback_core::health::{self, Change, Outcome, Rules, State};
use pg_callback_core::http::Response;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const ENDPOINTS: &str = include_str!("../../sql/worker/endpoints.sql");
const TAKE_PROBE: &str = include_str!("../../sql/worker/take_probe.sql");
const UNCLAIM: &str = include_str!("../../sql/worker/unclaim.sql");
const ADD: &str = include_str!("../../sql/worker/endpoints_add.sql");
const LOCK: &str = include_str!("../../sql/worker/endpoints_lock.sql");
const UPDATE: &str = include_str!("../../sql/worker/endpoints_update.sql");
const PARK: &str = include_str!("../../sql/worker/park.sql");

thread_local! {
    /// The endpoints down or failing, as read at the last claim: the only ones, besides
    /// those failing now, whose results are counted (an answer resets their failures).
    static KNOWN: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    /// endpoints.sql, read at each claim that took callbacks: parsed and planned once.
    static ENDPOINTS_PLAN: Kept<OwnedPreparedStatement> = const { RefCell::new(None) };
}

/// Whether this schema follows endpoints' health (0.3.0 and later).
fn followed() -> bool {
    spi::has_column(c"endpoints", c"probe_callback_id")
}

/// The settings' rules, the probe intervals times pg_callback.time_scale.
fn rules() -> Rules {
    let scaled = |seconds: i32| Duration::from_secs_f64(f64::from(seconds.max(1)) * guc::TIME_SCALE.get().max(0.0));
    Rules {
        down_after: guc::ENDPOINT_DOWN_AFTER.get().max(0) as u32,
        first_probe: scaled(guc::ENDPOINT_PROBE_INTERVAL_S.get()),
        longest_probe: scaled(guc::ENDPOINT_PROBE_MAX_S.get()),
    }
}

/// The claimed callbacks to send: those of endpoints up, and for each down endpoint whose
/// probe is due and not under way, the first claimed (the earliest due) as its probe. The
/// others of down endpoints are given back unsent, due at the endpoint's next probe.
pub fn keep_sendable(client: &mut SpiClient<'_>, claimed: Vec<Claimed>) -> SpiResult<Vec<Claimed>> {
    if !followed() {
        return Ok(claimed);
    }
    let mut down = HashMap::new();
    let mut known = HashSet::new();
    let make = |client: &mut SpiClient<'_>| Ok(client.prepare(ENDPOINTS, &[])?.keep());
    spi::with(&ENDPOINTS_PLAN, client, make, |client, plan| {
        for row in spi::with_kept_plans(|| client.select(plan, None, &[]))? {
            let endpoint: String = row.get_by_name("endpoint")?.unwrap_or_default();
            if row.get_by_name("down")?.unwrap_or(false) {
                down.insert(
                    endpoint.clone(),
                    row.get_by_name::<f64, _>("next_probe")?.unwrap_or(0.0),
                );
            }
            known.insert(endpoint);
        }
        Ok(())
    })?;
    KNOWN.set(known);
    if down.is_empty() {
        return Ok(claimed);
    }
    let (mut sendable, mut unsent, mut due) = (Vec::with_capacity(claimed.len()), Vec::new(), Vec::new());
    for c in claimed {
        let Some(next_probe) = down.get_mut(&c.endpoint) else {
            sendable.push(c);
            continue;
        };
        let args = [c.endpoint.as_str().into(), c.id.into(), c.lease.as_secs_f64().into()];
        let taken = client.update(TAKE_PROBE, Some(1), &args)?;
        let next: Option<f64> = match taken.is_empty() {
            true => None,
            false => taken.first().get_one()?,
        };
        match next {
            Some(next) => {
                // The probe: the endpoint's others wait until the next one.
                client.update(PARK, None, &[vec![c.endpoint.clone()].into()])?;
                *next_probe = next;
                sendable.push(c);
            }
            None => {
                unsent.push(c.id);
                due.push(*next_probe);
            }
        }
    }
    if !unsent.is_empty() {
        client.update(UNCLAIM, None, &[unsent.into(), due.into()])?;
    }
    Ok(sendable)
}

/// Counts the answers of a batch against their endpoints: those failing now, and those known
/// to be down or failing (src/deliver/write.rs runs it in the transaction writing them).
/// Returns the endpoints that went down or whose probe failed: their callbacks wait for the
/// next probe.
pub fn record(client: &mut SpiClient<'_>, answered: &[(&Claimed, &Response)]) -> SpiResult<Vec<String>> {
    if !followed() {
        return Ok(Vec::new());
    }
    let mut outcomes: HashMap<&str, Vec<(Outcome, Option<String>)>> = HashMap::new();
    KNOWN.with_borrow(|known| {
        for (c, r) in answered {
            let failed = health::is_failure(r.status, r.hopeless);
            if failed || known.contains(&c.endpoint) {
                let error = failed.then(|| {
                    r.error
                        .clone()
                        .unwrap_or_else(|| format!("HTTP {}", r.status.unwrap_or(0)))
                });
                let outcome = Outcome { callback: c.id, failed };
                outcomes.entry(c.endpoint.as_str()).or_default().push((outcome, error));
            }
        }
    });
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let endpoints: Vec<String> = outcomes.keys().map(|e| e.to_string()).collect();
    client.update(ADD, None, &[endpoints.clone().into()])?;
    let rules = rules();
    let mut update = Update::default();
    for row in client.update(LOCK, None, &[endpoints.into()])? {
        let endpoint: String = row.get_by_name("endpoint")?.unwrap_or_default();
        let state = State {
            down: row.get_by_name("down")?.unwrap_or(false),
            failures: row.get_by_name::<i32, _>("failures")?.unwrap_or(0).max(0) as u32,
            probe_interval: Duration::from_secs_f64(
                row.get_by_name::<f64, _>("probe_interval")?.unwrap_or(0.0).max(0.0),
            ),
            probe: row.get_by_name("probe_callback_id")?,
        };
        let Some(these) = outcomes.get(endpoint.as_str()) else {
            continue;
        };
        let list: Vec<Outcome> = these.iter().map(|(o, _)| *o).collect();
        let (next, change) = health::after(&state, &list, &rules);
        let error = these.iter().rev().find_map(|(_, e)| e.clone());
        update.push(endpoint, next, change, error);
    }
    update.write(client)
}

/// The columns of endpoints_update.sql, and the endpoints whose callbacks are let go or parked.
#[derive(Default)]
struct Update {
    endpoints: Vec<String>,
    down: Vec<bool>,
    failures: Vec<i32>,
    probe_interval: Vec<f64>,
    probe: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    change: Vec<&'static str>,
    up: Vec<String>,
    parked: Vec<String>,
}

impl Update {
    fn push(&mut self, endpoint: String, state: State, change: Change, error: Option<String>) {
        match change {
            Change::Up => self.up.push(endpoint.clone()),
            Change::Down | Change::ProbeFailed => self.parked.push(endpoint.clone()),
            Change::None => {}
        }
        if change == Change::Down {
            log!(
                "pg_callback worker: endpoint {endpoint} is down after {} failures in a row ({}); its callbacks wait for a probe in {:?}",
                state.failures,
                error.as_deref().unwrap_or("no answer"),
                state.probe_interval
            );
        }
        self.endpoints.push(endpoint);
        self.down.push(state.down);
        self.failures.push(state.failures.min(i32::MAX as u32) as i32);
        self.probe_interval.push(state.probe_interval.as_secs_f64());
        self.probe.push(state.probe);
        self.error.push(error);
        self.change.push(match change {
            Change::None => "none",
            Change::Down => "down",
            Change::ProbeFailed => "probe_failed",
            Change::Up => "up",
        });
    }

    /// Lets the callbacks of endpoints back up go (before their next probe time is cleared),
    /// writes the states, then parks the callbacks of those down until their next probe;
    /// returns those.
    fn write(self, client: &mut SpiClient<'_>) -> SpiResult<Vec<String>> {
        for endpoint in &self.up {
            client.update("SELECT callback._unpark($1)", None, &[endpoint.as_str().into()])?;
            log!("pg_callback worker: endpoint {endpoint} answers again; its callbacks go");
        }
        let args = [
            self.endpoints.into(),
            self.down.into(),
            self.failures.into(),
            self.probe_interval.into(),
            self.probe.into(),
            self.error.into(),
            self.change.into(),
        ];
        client.update(UPDATE, None, &args)?;
        if !self.parked.is_empty() {
            client.update(PARK, None, &[self.parked.clone().into()])?;
        }
        Ok(self.parked)
    }
}
