//! Recording callbacks: the trigger on messages' status changes, and `_record_event` for the
//! triggers written in PL/pgSQL (attempts, campaigns, alerts).
//!
//! Every status change of a message runs here, in the application's transaction, so this is
//! the cost pg_callback adds to it: the plans are prepared once per backend, the event's
//! variables and data are built in Rust, and the URL and body are filled without going
//! through jsonb. The settings targets are chosen from come from `callback._target_settings`
//! (sql/events.sql, where the order of precedence is listed); the message data is documented
//! in the README.

use crate::error::CallbackError;
use crate::plans::{self, types, Kept};
use crate::{render, shared, template};
use base64::Engine;
use pgrx::datum::TryFromDatumError;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiHeapTupleData, SpiResult};
use pgrx::JsonB;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const MEMBER: &str = include_str!("../sql/record/member.sql");
const TARGETS: &str = include_str!("../sql/record/targets.sql");
const SUBSCRIPTIONS: &str = include_str!("../sql/record/subscriptions.sql");
const INSERT: &str = include_str!("../sql/record/insert.sql");
const ATTEMPT_IDS: &str = include_str!("../sql/record/attempt_ids.sql");
const STATUSES: &str = include_str!("../sql/record/statuses.sql");
const ACCOUNT_OF: &str = include_str!("../sql/record/account_of.sql");

/// The statements recording runs, prepared once per backend (src/plans.rs).
struct Plans {
    member: OwnedPreparedStatement,
    targets: OwnedPreparedStatement,
    subscriptions: OwnedPreparedStatement,
    insert: OwnedPreparedStatement,
    attempt_ids: OwnedPreparedStatement,
    statuses: OwnedPreparedStatement,
    account_of: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: Kept<Plans> = const { RefCell::new(None) };
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
    /// This backend's random generator, with the process it was seeded in.
    static RANDOM: RefCell<Option<(i32, StdRng)>> = const { RefCell::new(None) };
}

fn prepare(client: &mut SpiClient<'_>) -> SpiResult<Plans> {
    let insert_args = [
        "text", "bigint", "bigint", "bigint", "text", "bigint", "text", "text", "text", "text", "text", "text", "text",
        "text", "bool", "uuid",
    ];
    Ok(Plans {
        member: client.prepare(MEMBER, &types(&["bigint"]))?.keep(),
        targets: client.prepare(TARGETS, &types(&["bigint", "bigint", "bigint"]))?.keep(),
        subscriptions: client
            .prepare(SUBSCRIPTIONS, &types(&["bigint", "text", "text"]))?
            .keep(),
        insert: client.prepare_mut(INSERT, &types(&insert_args))?.keep(),
        attempt_ids: client.prepare(ATTEMPT_IDS, &types(&["bigint"]))?.keep(),
        statuses: client.prepare(STATUSES, &[])?.keep(),
        account_of: client.prepare(ACCOUNT_OF, &types(&["bigint", "bigint"]))?.keep(),
    })
}

/// Runs `f` connected to SPI, with this backend's plans and the cache made valid; an error is
/// raised as `{what}: {error}`.
fn recording(what: impl std::fmt::Display, f: impl FnOnce(&mut SpiClient<'_>, &Plans, &mut Cache) -> SpiResult<()>) {
    Spi::connect_mut(|client| {
        plans::with(&PLANS, client, prepare, |client, plans| {
            with_cache(client, plans, |client, cache| f(client, plans, cache))
        })
    })
    .unwrap_or_else(|e| error!("{what}: {e}"));
}

/// A status: whether it is final, and the event it fires.
type Status = (bool, Option<String>);

/// What a set of target settings is read for: campaign, list (of a message outside
/// campaigns), account.
type SourcesKey = (Option<i64>, Option<i64>, i64);

/// What recording reads on every event and rarely changes: the statuses, and what targets are
/// chosen from, per campaign (or list) and account. Valid while the shared settings version
/// is the one it was read at (src/shared.rs); a transaction that changes them reads afresh.
struct Cache {
    version: u64,
    schema: pg_sys::Oid,
    statuses: HashMap<String, Status>,
    sources: HashMap<SourcesKey, Rc<Sources>>,
}

/// Entries kept at most; past that the cache starts again.
const CACHE_ENTRIES: usize = 10_000;

fn read_statuses(client: &mut SpiClient<'_>, plans: &Plans) -> SpiResult<HashMap<String, Status>> {
    let mut statuses = HashMap::new();
    for row in client.select(&plans.statuses, None, &[])? {
        let status: String = row.get_by_name("status")?.unwrap_or_default();
        statuses.insert(
            status,
            (row.get_by_name("final")?.unwrap_or(false), row.get_by_name("fires")?),
        );
    }
    Ok(statuses)
}

fn read_sources(client: &mut SpiClient<'_>, plans: &Plans, key: SourcesKey) -> SpiResult<Sources> {
    let args = [key.0.into(), key.1.into(), key.2.into()];
    let row = client
        .select(&plans.targets, Some(1), &args)?
        .first()
        .get_heap_tuple()?;
    Sources::of(&row.expect("_target_settings returns one row"))
}

/// Runs `f` with the cache, made valid first (or, when nothing may be cached, a fresh one
/// used once).
fn with_cache<R>(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    f: impl FnOnce(&mut SpiClient<'_>, &mut Cache) -> SpiResult<R>,
) -> SpiResult<R> {
    let schema = plans::callback_schema();
    let version = shared::settings_version().filter(|_| !shared::settings_changed_here());
    let fresh = |client: &mut SpiClient<'_>| -> SpiResult<Cache> {
        Ok(Cache {
            version: version.unwrap_or(0),
            schema,
            statuses: read_statuses(client, plans)?,
            sources: HashMap::new(),
        })
    };
    let Some(version) = version else {
        let mut once = fresh(client)?;
        return f(client, &mut once);
    };
    let mut cache = match CACHE.take() {
        Some(c) if c.version == version && c.schema == schema && c.sources.len() < CACHE_ENTRIES => c,
        _ => fresh(client)?,
    };
    let result = f(client, &mut cache);
    CACHE.set(Some(cache));
    result
}

impl Cache {
    fn sources(&mut self, client: &mut SpiClient<'_>, plans: &Plans, key: SourcesKey) -> SpiResult<Rc<Sources>> {
        if let Some(found) = self.sources.get(&key) {
            return Ok(Rc::clone(found));
        }
        let sources = Rc::new(read_sources(client, plans, key)?);
        self.sources.insert(key, Rc::clone(&sources));
        Ok(sources)
    }
}

/// Where an event happened: what its targets are chosen by.
struct Scope<'a> {
    account_id: i64,
    campaign_id: Option<i64>,
    message_id: Option<i64>,
    channel: Option<&'a str>,
    notify_url: Option<&'a str>,
    notify_format: Option<&'a str>,
}

/// How one target is sent to: its URL template and the settings that go with it.
#[derive(Clone)]
struct Delivery {
    url: String,
    method: String,
    format: String,
    headers: Option<String>,
    basic_auth: Option<String>,
    bearer_token: Option<String>,
    signing_secret: Option<String>,
    retry_policy: String,
}

impl Delivery {
    /// POST with no credentials, retried by the standard policy.
    fn plain(url: &str, format: &str) -> Delivery {
        Delivery {
            url: url.to_string(),
            method: "POST".into(),
            format: format.to_string(),
            headers: None,
            basic_auth: None,
            bearer_token: None,
            signing_secret: None,
            retry_policy: "standard".into(),
        }
    }

    /// The settings in columns `{prefix}url`, `{prefix}method` ... of a row; None when they are
    /// NULL (no such campaign or list). The URL is empty when not set.
    fn of(row: &SpiHeapTupleData, prefix: &str) -> SpiResult<Option<Delivery>> {
        let text = |name: &str| row.get_by_name::<String, _>(format!("{prefix}{name}"));
        let Some(method) = text("method")? else {
            return Ok(None);
        };
        Ok(Some(Delivery {
            url: text("url")?.unwrap_or_default(),
            method,
            format: text("format")?.unwrap_or_default(),
            headers: text("headers")?,
            basic_auth: text("basic_auth")?,
            bearer_token: text("bearer_token")?,
            signing_secret: text("signing_secret")?,
            retry_policy: text("retry_policy")?.unwrap_or_default(),
        }))
    }
}

/// What an event's targets are chosen from: a row of `callback._target_settings`.
struct Sources {
    campaign: Option<Delivery>,
    campaign_events: Vec<String>,
    campaign_event_urls: Map<String, Value>,
    campaign_alert_url: Option<String>,
    /// None outside campaigns.
    campaign_enabled: Option<bool>,
    list: Option<Delivery>,
    list_events: Vec<String>,
    webhook_url: Option<String>,
    subscribed: bool,
    campaign_list_id: Option<i64>,
    campaign_env: Map<String, Value>,
}

impl Sources {
    fn of(row: &SpiHeapTupleData) -> SpiResult<Sources> {
        Ok(Sources {
            campaign: Delivery::of(row, "campaign_")?,
            campaign_events: row.get_by_name("campaign_events")?.unwrap_or_default(),
            campaign_event_urls: json_object(row.get_by_name("campaign_event_urls")?),
            campaign_alert_url: row.get_by_name("campaign_alert_url")?,
            campaign_enabled: row.get_by_name("campaign_enabled")?,
            list: Delivery::of(row, "list_")?,
            list_events: row.get_by_name("list_events")?.unwrap_or_default(),
            webhook_url: row.get_by_name("webhook_url")?,
            subscribed: row.get_by_name("subscribed")?.unwrap_or(false),
            campaign_list_id: row.get_by_name("campaign_list_id")?,
            campaign_env: json_object(row.get_by_name("campaign_env")?),
        })
    }

    /// The one most specific target of `event` (precedence in sql/events.sql): its kind, how it
    /// is sent, and whether it is held because the campaign's callbacks are disabled.
    fn primary(&self, event: &str, scope: &Scope) -> Option<(&'static str, Delivery, bool)> {
        let held = self.campaign_enabled == Some(false) && event != "campaign.callbacks_disabled";
        if let (Some(url), "message.status") = (scope.notify_url, event) {
            return Some((
                "message",
                Delivery::plain(url, scope.notify_format.unwrap_or("json")),
                false,
            ));
        }
        if let Some(campaign) = &self.campaign {
            let to = |url: &str| Delivery {
                url: url.to_string(),
                ..campaign.clone()
            };
            if let ("campaign.callbacks_disabled", Some(url)) = (event, &self.campaign_alert_url) {
                return Some((
                    "alert",
                    Delivery {
                        retry_policy: "standard".into(),
                        ..to(url)
                    },
                    false,
                ));
            }
            if let Some(Value::String(url)) = self.campaign_event_urls.get(event) {
                return Some(("campaign_event", to(url), held));
            }
            if !campaign.url.is_empty() {
                let sends = self.campaign_events.iter().any(|e| e == event);
                return sends.then(|| ("campaign", campaign.clone(), held));
            }
        }
        if let Some(list) = &self.list {
            if !list.url.is_empty() && self.list_events.iter().any(|e| e == event) {
                return Some(("list", list.clone(), held));
            }
        }
        match (event, &self.webhook_url) {
            ("message.status", Some(url)) => Some(("account", Delivery::plain(url, "json"), false)),
            _ => None,
        }
    }
}

/// Records `event` for each of its targets: the URL filled from `vars` (plus `event`), the
/// body from the envelope `{type, timestamp, data}`. Wakes the workers at commit when one is
/// due now (not held, not waiting behind another).
fn record(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    event: &str,
    scope: &Scope,
    sources: &Sources,
    vars: &Map<String, Value>,
    data: &Value,
) -> SpiResult<()> {
    let mut targets: Vec<(&str, Option<i64>, Delivery, bool)> = Vec::new();
    if let Some((kind, delivery, held)) = sources.primary(event, scope) {
        targets.push((kind, None, delivery, held));
    }
    if sources.subscribed {
        let args = [scope.account_id.into(), event.into(), scope.channel.into()];
        for row in client.select(&plans.subscriptions, None, &args)? {
            let delivery = Delivery::of(&row, "")?.expect("a subscription has a method");
            targets.push(("subscription", row.get_by_name("id")?, delivery, false));
        }
    }
    if targets.is_empty() {
        return Ok(());
    }
    let mut vars = vars.clone();
    vars.insert("event".into(), event.into());
    let envelope = json!({"type": event, "timestamp": render::iso_timestamp(now_unix_micros()), "data": data});
    let order_scope = match (scope.message_id, scope.campaign_id) {
        (Some(id), _) => format!("message:{id}"),
        (None, Some(id)) => format!("campaign:{id}"),
        (None, None) => String::new(),
    };
    let mut due = false;
    for (kind, subscription_id, delivery, held) in targets {
        let url = template::render(&delivery.url, &vars).unwrap_or_else(|error| {
            CallbackError::Template {
                template: delivery.url.clone(),
                error,
            }
            .raise()
        });
        let mut headers = json_object(delivery.headers);
        let body = (delivery.method == "POST").then(|| {
            let format = render::Format::parse(&delivery.format)
                .unwrap_or_else(|| CallbackError::Format(delivery.format.clone()).raise());
            headers.insert("Content-Type".into(), format.content_type().into());
            render::render(format, &envelope)
        });
        let auth_header = match (&delivery.basic_auth, &delivery.bearer_token) {
            (Some(basic), _) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(basic)
            )),
            (None, Some(token)) => Some(format!("Bearer {token}")),
            (None, None) => None,
        };
        let order_key = format!("{order_scope} {url}");
        let headers = Value::Object(headers).to_string();
        let args = [
            event.into(),
            scope.account_id.into(),
            scope.campaign_id.into(),
            scope.message_id.into(),
            kind.into(),
            subscription_id.into(),
            url.as_str().into(),
            delivery.method.as_str().into(),
            headers.as_str().into(),
            body.as_deref().into(),
            auth_header.as_deref().into(),
            delivery.signing_secret.as_deref().into(),
            delivery.retry_policy.as_str().into(),
            order_key.as_str().into(),
            held.into(),
            webhook_id().into(),
        ];
        due |= client
            .update(&plans.insert, None, &args)?
            .first()
            .get_one::<bool>()?
            .unwrap_or(false);
    }
    if due {
        shared::wake_on_commit();
    }
    Ok(())
}

/// 2000-01-01, where Postgres counts timestamps from, in microseconds since 1970.
const POSTGRES_EPOCH_IN_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Now (the transaction's start, as `now()`) in microseconds since 1970.
fn now_unix_micros() -> i64 {
    // SAFETY: reads the current transaction's start time.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() + POSTGRES_EPOCH_IN_UNIX_MICROS }
}

/// A new random (version 4) UUID, a callback's webhook-id. `gen_random_uuid()` asks OpenSSL
/// for every one, which cost a tenth of recording; this generator is seeded from the operating
/// system once per process (and again in a forked one).
fn webhook_id() -> pgrx::Uuid {
    // SAFETY: reads this backend's pid.
    let pid = unsafe { pg_sys::MyProcPid };
    let mut bytes: [u8; 16] = RANDOM.with_borrow_mut(|random| match random {
        Some((seeded_in, rng)) if *seeded_in == pid => rng.random(),
        _ => {
            let mut rng = StdRng::from_os_rng();
            let bytes = rng.random();
            *random = Some((pid, rng));
            bytes
        }
    });
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    pgrx::Uuid::from_bytes(bytes)
}

/// Records an event for the PL/pgSQL triggers (through `callback._record`). `list_id`: the
/// list of a message outside campaigns (its member's).
#[pg_extern(volatile, parallel_unsafe, name = "_record_event")]
#[allow(clippy::too_many_arguments)]
fn record_event(
    event: &str,
    account_id: i64,
    campaign_id: Option<i64>,
    message_id: Option<i64>,
    list_id: Option<i64>,
    channel: Option<&str>,
    notify_url: Option<&str>,
    notify_format: Option<&str>,
    vars: JsonB,
    data: JsonB,
) {
    let scope = Scope {
        account_id,
        campaign_id,
        message_id,
        channel,
        notify_url,
        notify_format,
    };
    let vars = match vars.0 {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    recording(format_args!("recording {event}"), |client, plans, cache| {
        let sources = cache.sources(client, plans, (campaign_id, list_id, account_id))?;
        record(client, plans, event, &scope, &sources, &vars, &data.0)
    });
}

/// A message whose status changed, as recording reads it: a row of `callback.messages`, or of
/// an application's own table attached with `callback.attach()`.
struct Message {
    id: i64,
    account_id: i64,
    campaign_id: Option<i64>,
    /// The list of a message outside campaigns: its member's, or an attached table's list column.
    list_id: Option<i64>,
    member_id: Option<i64>,
    batch_id: Option<String>,
    channel: Option<String>,
    destination: Option<String>,
    status: String,
    previous: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    callback_data: Option<String>,
    notify_url: Option<String>,
    notify_format: Option<String>,
    member_attributes: Option<String>,
    created_at: Option<String>,
    status_at: Option<String>,
    /// Whether its attempts are in `callback.attempts` (not for attached tables).
    has_attempts: bool,
}

/// What a status change means, from the cached statuses.
struct StatusEvents {
    /// Whether the new status is final.
    is_final: bool,
    /// The event the new status fires (message.sent, message.problem).
    fires: Option<String>,
    /// Whether the previous status was final.
    was_final: bool,
}

impl StatusEvents {
    fn of(cache: &Cache, status: &str, previous: Option<&str>) -> StatusEvents {
        let (is_final, fires) = cache.statuses.get(status).cloned().unwrap_or((false, None));
        let was_final = previous.and_then(|p| cache.statuses.get(p)).is_some_and(|s| s.0);
        StatusEvents {
            is_final,
            fires,
            was_final,
        }
    }

    /// Whether anything is recorded (`intermediate`: every status is reported).
    fn record_any(&self, intermediate: bool) -> bool {
        self.is_final || intermediate || self.fires.is_some()
    }
}

/// Records message.status (final statuses, or every status with intermediate reports), the
/// event the status fires (message.sent, message.problem), and message.final when the message
/// first becomes final.
fn record_message(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    cache: &mut Cache,
    m: Message,
    events: StatusEvents,
    intermediate: bool,
) -> SpiResult<()> {
    let StatusEvents {
        is_final,
        fires,
        was_final,
    } = events;
    let sources = cache.sources(client, plans, (m.campaign_id, m.list_id, m.account_id))?;
    let campaign_list_id = sources.campaign_list_id;

    // Variables: member attributes, then campaign env, then the built-ins.
    let mut vars = json_object(m.member_attributes.clone());
    vars.extend(sources.campaign_env.clone());
    let builtins = [
        ("id", json!(m.id)),
        ("messageId", json!(m.id)),
        ("memberId", json!(m.member_id)),
        ("campaignId", json!(m.campaign_id)),
        ("communicationId", json!(m.campaign_id)),
        ("listId", json!(campaign_list_id.or(m.list_id))),
        ("accountId", json!(m.account_id)),
        ("batchId", json!(m.batch_id)),
        ("status", json!(m.status)),
        ("channel", json!(m.channel)),
        ("destination", json!(m.destination)),
    ];
    vars.extend(
        builtins
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.to_string(), v)),
    );

    let error = (m.error_code.is_some() || m.error_message.is_some())
        .then(|| json!({"code": m.error_code, "message": m.error_message}));
    let mut data = json!({
        "message_id": m.id,
        "account_id": m.account_id,
        "campaign_id": m.campaign_id,
        "list_id": campaign_list_id,
        "member_id": m.member_id,
        "batch_id": m.batch_id,
        "channel": m.channel,
        "destination": m.destination,
        "status": m.status,
        "previous_status": m.previous,
        "final": is_final,
        "error": error,
        "callback_data": m.callback_data,
        "created_at": m.created_at,
        "status_at": m.status_at,
    });
    let scope = Scope {
        account_id: m.account_id,
        campaign_id: m.campaign_id,
        message_id: Some(m.id),
        channel: m.channel.as_deref(),
        notify_url: m.notify_url.as_deref(),
        notify_format: m.notify_format.as_deref(),
    };
    if is_final || intermediate {
        record(client, plans, "message.status", &scope, &sources, &vars, &data)?;
    }
    if let Some(fires) = &fires {
        record(client, plans, fires, &scope, &sources, &vars, &data)?;
    }
    if is_final && !was_final {
        let ids = if m.has_attempts {
            client
                .select(&plans.attempt_ids, Some(1), &[m.id.into()])?
                .first()
                .get_one::<Vec<i64>>()?
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        data["attempt_ids"] = json!(ids);
        record(client, plans, "message.final", &scope, &sources, &vars, &data)?;
    }
    Ok(())
}

/// AFTER INSERT or UPDATE OF status on `callback.messages`: records what the change means
/// (`record_message`), reading the rest of the row only when something is recorded.
#[pg_trigger]
fn _message_events<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, TryFromDatumError> {
    let new = trigger
        .new()
        .expect("an AFTER INSERT or UPDATE row trigger has a new row");
    if new.get_by_name::<bool>("notify")? != Some(true) {
        return Ok(None);
    }
    let status: String = new.get_by_name("status")?.unwrap_or_default();
    let intermediate = new.get_by_name::<bool>("intermediate_reports")?.unwrap_or(false);
    let previous: Option<String> = match trigger.old() {
        Some(old) => old.get_by_name("status")?,
        None => None,
    };
    recording("recording the status of a message", |client, plans, cache| {
        let events = StatusEvents::of(cache, &status, previous.as_deref());
        if !events.record_any(intermediate) {
            return Ok(());
        }
        // Something is recorded: read the rest of the row.
        let text = |name: &str| new.get_by_name::<String>(name);
        let id = |name: &str| new.get_by_name::<i64>(name);
        let member_id = id("member_id")?;
        let (list_id, member_attributes) = match member_id {
            Some(member) => {
                let row = client.select(&plans.member, Some(1), &[member.into()])?.first();
                (
                    row.get_by_name::<i64, _>("list_id")?,
                    row.get_by_name::<String, _>("attributes")?,
                )
            }
            None => (None, None),
        };
        let row = RawRow::new(trigger);
        let message = Message {
            id: id("id")?.expect("a message has an id"),
            account_id: id("account_id")?.expect("a message has an account"),
            campaign_id: id("campaign_id")?,
            list_id,
            member_id,
            batch_id: text("batch_id")?,
            channel: row.label(c"channel"),
            destination: text("destination")?,
            status: status.clone(),
            previous: previous.clone(),
            error_code: text("error_code")?,
            error_message: text("error_message")?,
            callback_data: text("callback_data")?,
            notify_url: text("notify_url")?,
            notify_format: row.label(c"notify_content_type"),
            member_attributes,
            created_at: row.iso(c"created_at"),
            status_at: row.iso(c"updated_at"),
            has_attempts: true,
        };
        record_message(client, plans, cache, message, events, intermediate)
    });
    Ok(None)
}

/// AFTER INSERT or UPDATE OF its status column on an application's table attached with
/// `callback.attach()`: records what `callback.messages` would. Its arguments name the columns,
/// `field=column` (sql/attach.sql); values are read as text, so any integer type holds ids and
/// any type the status. The account is its campaign's or list's.
#[pg_trigger]
fn _attached_events<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, TryFromDatumError> {
    let args = trigger.extra_args().unwrap_or_default();
    let columns: HashMap<&str, &str> = args.iter().filter_map(|a| a.split_once('=')).collect();
    let new = RawRow::new(trigger);
    let value = |row: &RawRow, field: &str| columns.get(field).and_then(|column| row.text(column));
    let Some(status) = value(&new, "status") else {
        return Ok(None);
    };
    let previous = RawRow::old(trigger).and_then(|old| value(&old, "status"));
    let number = |field: &str| -> Option<i64> {
        value(&new, field).map(|v| {
            v.parse()
                .unwrap_or_else(|_| error!("pg_callback: {field} \"{v}\" of an attached table is not an integer"))
        })
    };
    recording("recording the status of an attached message", |client, plans, cache| {
        let events = StatusEvents::of(cache, &status, previous.as_deref());
        if !events.record_any(false) {
            return Ok(());
        }
        let (campaign_id, list_id) = (number("campaign_id"), number("list_id"));
        let args = [campaign_id.into(), list_id.into()];
        let account = client
            .select(&plans.account_of, Some(1), &args)?
            .first()
            .get_one::<i64>()?;
        let Some(account_id) = account else {
            let (what, id) = match campaign_id {
                Some(id) => ("campaign", Some(id)),
                None => ("list", list_id),
            };
            let id = id.map_or("NULL".to_string(), |id| id.to_string());
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
                format!("{what} {id} of an attached message does not exist"),
                "callback.attach() records callbacks only for rows of a campaign or list of pg_callback."
            );
        };
        let message = Message {
            id: number("id").unwrap_or_else(|| error!("pg_callback: an attached message has no id")),
            account_id,
            campaign_id,
            list_id,
            member_id: None,
            batch_id: value(&new, "batch_id"),
            channel: value(&new, "channel"),
            destination: value(&new, "destination"),
            status: status.clone(),
            previous: previous.clone(),
            error_code: value(&new, "error_code"),
            error_message: value(&new, "error_message"),
            callback_data: value(&new, "callback_data"),
            notify_url: None,
            notify_format: None,
            member_attributes: None,
            created_at: None,
            status_at: Some(render::iso_timestamp(now_unix_micros())),
            has_attempts: false,
        };
        record_message(client, plans, cache, message, events, false)
    });
    Ok(None)
}

/// The new (or old) row of a row trigger, read without pgrx's conversions: enums as their
/// label, timestamps as bodies write them, any column as text.
struct RawRow {
    tuple: *mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
}

impl RawRow {
    fn new(trigger: &PgTrigger) -> RawRow {
        let data = trigger.trigger_data();
        // An UPDATE's new row is tg_newtuple; an INSERT's is tg_trigtuple.
        let tuple = if data.tg_newtuple.is_null() {
            data.tg_trigtuple
        } else {
            data.tg_newtuple
        };
        // SAFETY: a row trigger's relation is open while it runs.
        RawRow {
            tuple,
            desc: unsafe { (*data.tg_relation).rd_att },
        }
    }

    /// An UPDATE's old row (tg_trigtuple); None for an INSERT.
    fn old(trigger: &PgTrigger) -> Option<RawRow> {
        let data = trigger.trigger_data();
        (!data.tg_newtuple.is_null()).then(|| RawRow {
            tuple: data.tg_trigtuple,
            // SAFETY: as in new().
            desc: unsafe { (*data.tg_relation).rd_att },
        })
    }

    fn number(&self, column: &std::ffi::CStr) -> Option<std::num::NonZeroUsize> {
        // SAFETY: the descriptor belongs to the running trigger.
        let number = unsafe { pg_sys::SPI_fnumber(self.desc, column.as_ptr()) };
        std::num::NonZeroUsize::new(usize::try_from(number).ok()?)
    }

    fn datum(&self, column: &std::ffi::CStr) -> Option<pg_sys::Datum> {
        let number = self.number(column)?;
        // SAFETY: the row and its descriptor belong to the running trigger; the column number
        // comes from that descriptor.
        unsafe { pgrx::heap_getattr_raw(self.tuple, number, self.desc) }
    }

    fn label(&self, column: &std::ffi::CStr) -> Option<String> {
        let value = self.datum(column)?;
        Some(pgrx::enum_helper::lookup_enum_by_oid(pg_sys::Oid::from(value.value() as u32)).0)
    }

    fn iso(&self, column: &std::ffi::CStr) -> Option<String> {
        let value = self.datum(column)?;
        Some(render::iso_timestamp(
            value.value() as i64 + POSTGRES_EPOCH_IN_UNIX_MICROS,
        ))
    }

    /// A column's value as its type's output function writes it; None when NULL or missing.
    fn text(&self, column: &str) -> Option<String> {
        let column = std::ffi::CString::new(column).ok()?;
        let number = self.number(&column)?;
        // SAFETY: as in datum(); SPI_getvalue returns NULL or a palloc'd C string.
        unsafe {
            let value = pg_sys::SPI_getvalue(self.tuple, self.desc, number.get() as i32);
            (!value.is_null()).then(|| std::ffi::CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }
}

/// A JSON object given as text (member attributes, campaign env); empty when NULL.
fn json_object(text: Option<String>) -> Map<String, Value> {
    match text.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    }
}
