//! Rendering: events into callbacks. For each event, its targets are chosen (the one most
//! specific, and every matching subscription), and for each target its URL is filled, its body
//! and headers made, and the callback inserted into the queue, due now, waiting behind an
//! earlier one of its order key, or held while its campaign's callbacks are disabled.
//!
//! In: an event, in the transaction that caused it (`pg_callback.recording = immediate`,
//! from src/record/) or taken from `callback.events` by a worker after commit (`deferred`,
//! expand.rs). Out: rows of `callback.requests` and `callback.callbacks_undone`, and the
//! workers woken at commit when one is due. SQL: sql/render/*.sql, and
//! `callback._target_settings` (sql/events.sql, where the order of precedence is listed). The
//! pure parts (targets, templates, bodies) are in pg_callback_core.
//!
//! Every path that renders runs under `spi::with_generic_plans`: its statements keep their
//! generic plans, or each run would plan them again (their custom plans look cheaper, with the
//! event's values folded in), and whether a callback waits behind another of its order key was
//! a scan of the whole queue per callback from a plan made on an empty queue. It is set by the
//! callers that render, not on an SQL function, which would cost every call the setting and
//! its undoing, storing an event for later included.

mod batches;
mod cache;
pub mod expand;
mod plans;
mod queue;
mod targets;

use crate::api::error::CallbackError;
use crate::pg::shared;
use pg_callback_core::body::Format;
use pg_callback_core::callback::{self, Callback, RenderError};
use pg_callback_core::event::{self, json_object, Message, Other, Scope, StatusChange, MESSAGE_FINAL};
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};
use serde_json::{json, Map, Value};

pub use batches::{batches_made, next_send_by};
pub use cache::{cached, Cache};
pub use plans::Plans;
pub use queue::{derive_webhook_ids, Lease};

/// Runs `f` connected to SPI, with this backend's plans and the cache made valid; an error is
/// raised as `{what}: {error}`.
pub fn connected(
    what: impl std::fmt::Display,
    f: impl FnOnce(&mut SpiClient<'_>, &Plans, &mut Cache) -> SpiResult<()>,
) {
    Spi::connect_mut(|client| {
        plans::with(client, |client, plans| {
            cache::with(client, plans, |client, cache| f(client, plans, cache))
        })
    })
    .unwrap_or_else(|e| error!("{what}: {e}"));
}

/// Where rendered callbacks go, and when their events happened.
pub struct Rendering {
    /// When the event happened (Postgres microseconds): the envelope's timestamp.
    pub at: pg_sys::TimestampTz,
    /// The id of the stored event rendered (deferred recording), from which its callbacks'
    /// webhook-ids are derived in a worker (queue::derive_webhook_ids).
    pub stored: Option<i64>,
    /// None: in the event's transaction, each callback inserted at once; a URL that cannot be
    /// filled refuses the change. Some: by a worker after the event committed, gathered for
    /// one insert per batch of events; a URL that cannot be filled is recorded as a failed
    /// callback, as the change it reports can no longer be refused.
    gathered: Option<Vec<(Callback, pgrx::Uuid)>>,
    /// Events of batching targets, to wait for their batch (gathered by a worker; added at
    /// once in the event's transaction).
    batched: Vec<batches::Item>,
}

impl Rendering {
    /// In the transaction of the event, now.
    pub fn now() -> Rendering {
        Rendering {
            // SAFETY: reads the current transaction's start time (now()).
            at: unsafe { pg_sys::GetCurrentTransactionStartTimestamp() },
            stored: None,
            gathered: None,
            batched: Vec::new(),
        }
    }

    /// By a worker, gathered for one insert.
    pub fn gathered() -> Rendering {
        Rendering {
            at: 0,
            stored: None,
            gathered: Some(Vec::new()),
            batched: Vec::new(),
        }
    }
}

/// Renders the events a status change of `m` makes (`change`): message.status, the event its
/// status fires, message.final (with the message's attempts).
pub fn message(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    cache: &mut Cache,
    m: &Message,
    change: &StatusChange,
    rendering: &mut Rendering,
) -> SpiResult<()> {
    let (member_list_id, attributes) = match m.member_id {
        Some(member) => {
            let row = client.select(&plans.member, Some(1), &[member.into()])?.first();
            (
                row.get_by_name::<i64, _>("list_id")?,
                row.get_by_name::<String, _>("attributes")?,
            )
        }
        None => (None, None),
    };
    let list_id = m.list_id.or(member_list_id);
    let sources = cache.sources(client, plans, (m.campaign_id, list_id, m.account_id))?;
    let vars = m.vars(
        json_object(attributes.as_deref()),
        &sources.campaign_env,
        sources.campaign_list_id.or(list_id),
    );
    let mut data = m.data(sources.campaign_list_id, change.is_final);
    let scope = m.scope();
    for name in change.events(m.intermediate) {
        if name == MESSAGE_FINAL {
            let ids = match (&m.attempt_ids, m.has_attempts) {
                (Some(ids), _) => ids.clone(),
                (None, true) => client
                    .select(&plans.attempt_ids, Some(1), &[m.id.into()])?
                    .first()
                    .get_one::<Vec<i64>>()?
                    .unwrap_or_default(),
                (None, false) => Vec::new(),
            };
            data["attempt_ids"] = json!(ids);
        }
        render_event(client, plans, name, &scope, &sources, &vars, &data, rendering)?;
    }
    Ok(())
}

/// Renders any other event (attempts, campaigns, alerts).
pub fn other(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    cache: &mut Cache,
    o: &Other,
    rendering: &mut Rendering,
) -> SpiResult<()> {
    let vars = match &o.vars {
        Value::Object(map) => map,
        _ => &Map::new(),
    };
    let sources = cache.sources(client, plans, (o.campaign_id, o.list_id, o.account_id))?;
    render_event(client, plans, &o.event, &o.scope(), &sources, vars, &o.data, rendering)
}

/// What a status change means, from the cached statuses.
pub fn status_change(cache: &Cache, status: &str, previous: Option<&str>) -> StatusChange {
    StatusChange::of(&cache.statuses, status, previous)
}

/// Renders `event` for each of its targets: the URL filled from `vars` (plus `event`), the
/// body from the envelope `{type, timestamp, data}`. Wakes the workers at commit when one is
/// due now (not held, not waiting behind another).
#[allow(clippy::too_many_arguments)]
fn render_event(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    name: &str,
    scope: &Scope,
    sources: &pg_callback_core::target::Sources,
    vars: &Map<String, Value>,
    data: &Value,
    rendering: &mut Rendering,
) -> SpiResult<()> {
    let targets = targets::of_event(client, plans, name, scope, sources)?;
    if targets.is_empty() {
        return Ok(());
    }
    let mut vars = vars.clone();
    vars.insert("event".into(), name.into());
    let envelope = callback::envelope(name, rendering.at, data);
    let mut due = false;
    for (kind, subscription_id, target, held) in targets {
        let rendered = callback::render(
            name,
            scope,
            kind,
            subscription_id,
            target.clone(),
            held,
            &vars,
            &envelope,
        );
        let batching = target.batch.filter(|_| target.method == "POST");
        match (rendered, batching, &mut rendering.gathered) {
            (Ok(c), Some(batching), _) => {
                // POST bodies are rendered only in a format that parses.
                let format = Format::parse(&target.format).unwrap_or(Format::Json);
                rendering
                    .batched
                    .push(batches::Item::new(c, &envelope, format, batching, rendering.at));
            }
            (Ok(c), None, Some(gathered)) => {
                let id = queue::webhook_id_of(rendering.stored, name, kind.as_str(), subscription_id);
                gathered.push((c, id))
            }
            (Ok(c), None, None) => due |= queue::insert(c, client, plans)?,
            (Err(e), _, None) => error_of(e).raise(),
            (Err(e), _, Some(_)) => {
                let chosen = (kind.as_str(), subscription_id, &target);
                queue::unsendable(client, rendering.stored, name, scope, chosen, error_of(e).text())?
            }
        }
    }
    if due {
        shared::wake_on_commit();
    }
    // In the event's transaction, its batched events are added now, and a worker makes their
    // batches once it commits.
    if rendering.gathered.is_none() && !rendering.batched.is_empty() {
        batches::add(client, std::mem::take(&mut rendering.batched))?;
        shared::events_on_commit();
    }
    Ok(())
}

fn error_of(e: RenderError) -> CallbackError {
    match e {
        RenderError::Template { template, error } => CallbackError::Template { template, error },
        RenderError::Format(format) => CallbackError::Format(format),
    }
}

/// Inserts what a worker gathered, those `lease` allows leased to it, and makes the batches
/// now due (`more_coming`: it is rendering more events, which may fill those not full); wakes
/// the workers at commit when a callback is due now for whoever claims it. Returns the ids of
/// those leased.
pub fn insert_gathered(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    rendering: Rendering,
    lease: Option<&Lease<'_>>,
    more_coming: bool,
) -> SpiResult<Vec<i64>> {
    let (mut due, leased) = match rendering.gathered {
        Some(callbacks) => queue::insert_all(callbacks, lease, client, plans)?,
        None => (false, Vec::new()),
    };
    batches::add(client, rendering.batched)?;
    if batches::in_schema() {
        due |= batches::make_due(client, more_coming)?;
    }
    if due {
        shared::wake_on_commit();
    }
    Ok(leased)
}

/// An event as stored, rendered.
pub fn stored(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    cache: &mut Cache,
    e: &event::Event,
    rendering: &mut Rendering,
) -> SpiResult<()> {
    match e {
        event::Event::Status(m) => {
            let change = status_change(cache, &m.status, m.previous.as_deref());
            message(client, plans, cache, m, &change, rendering)
        }
        event::Event::Other(o) => other(client, plans, cache, o, rendering),
    }
}
