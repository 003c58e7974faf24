//! Recording callbacks: messages' status changes (from src/triggers.rs), attached tables'
//! rows, and `_record_event` for the triggers written in PL/pgSQL (attempts, campaigns, alerts).
//!
//! Every status change of a message runs here, in the application's transaction, so this is
//! the cost pg_callback adds to it. With `pg_callback.recording = deferred` (the default) the
//! transaction stores the event (one narrow row of `callback.events`) and a worker renders its
//! callbacks after commit (`_expand_events`); with `immediate` its callbacks are rendered at
//! once. Rendering is
//! the same code either way: the plans are prepared once per backend, the event's variables and
//! data are built in Rust, and the URL and body are filled without going through jsonb. The
//! settings targets are chosen from come from `callback._target_settings` (sql/events.sql,
//! where the order of precedence is listed); the message data is documented in the README.

use crate::error::CallbackError;
use crate::event_row;
use crate::guc::{Recording, RECORDING};
use crate::plans::{self, types, Kept};
use crate::triggers::Row;
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
const INSERT_BATCH: &str = include_str!("../sql/record/insert_batch.sql");
const ATTEMPT_IDS: &str = include_str!("../sql/record/attempt_ids.sql");
const STATUSES: &str = include_str!("../sql/record/statuses.sql");
const ACCOUNT_OF: &str = include_str!("../sql/record/account_of.sql");
const TAKE_LOCK: &str = include_str!("../sql/record/take_lock.sql");
const TAKE: &str = include_str!("../sql/record/take.sql");
const UNSENDABLE: &str = include_str!("../sql/record/unsendable.sql");

/// The statements recording runs, prepared once per backend (src/plans.rs).
struct Plans {
    member: OwnedPreparedStatement,
    targets: OwnedPreparedStatement,
    subscriptions: OwnedPreparedStatement,
    insert: OwnedPreparedStatement,
    insert_batch: OwnedPreparedStatement,
    attempt_ids: OwnedPreparedStatement,
    statuses: OwnedPreparedStatement,
    account_of: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: Kept<Plans> = const { RefCell::new(None) };
    /// The statements on callback.events, prepared when first needed (a schema of 0.1.0 has
    /// no such table).
    static EVENT_PLANS: Kept<EventPlans> = const { RefCell::new(None) };
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
        insert_batch: client
            .prepare_mut(
                INSERT_BATCH,
                &types(&[&insert_args.map(array_of)[..], &["bool[]"]].concat()),
            )?
            .keep(),
        attempt_ids: client.prepare(ATTEMPT_IDS, &types(&["bigint"]))?.keep(),
        statuses: client.prepare(STATUSES, &[])?.keep(),
        account_of: client.prepare(ACCOUNT_OF, &types(&["bigint", "bigint"]))?.keep(),
    })
}

struct EventPlans {
    lock: OwnedPreparedStatement,
    take: OwnedPreparedStatement,
}

fn prepare_event_plans(client: &mut SpiClient<'_>) -> SpiResult<EventPlans> {
    Ok(EventPlans {
        lock: client.prepare(TAKE_LOCK, &[])?.keep(),
        take: client.prepare_mut(TAKE, &types(&["int"]))?.keep(),
    })
}

/// Whether the installed schema has `callback.events`. Until `ALTER EXTENSION pg_callback
/// UPDATE` adds it to a schema of 0.1.0, this library records immediately there, and its
/// workers have nothing to render.
pub fn has_events_table() -> bool {
    // SAFETY: a syscache lookup by name.
    event_row::events_table() != pg_sys::InvalidOid
}

/// Runs `f` with `plan_cache_mode = force_generic_plan`: rendering's statements keep their
/// generic plans, or each run would plan them again (their custom plans look cheaper, with the
/// event's values folded in). Every path that renders sets it here, rather than on its SQL
/// function, which would cost every call the setting and its undoing, storing an event for
/// later included. A plan is kept from when the queue may have been empty, so no sequential
/// scans: whether a callback waits behind another of its order key was a scan of the whole
/// queue per callback, from a plan made on an empty queue.
fn with_generic_plans<R>(f: impl FnOnce() -> R) -> R {
    let settings = [(c"plan_cache_mode", c"force_generic_plan"), (c"enable_seqscan", c"off")];
    plans::with_settings(&settings, f)
}

/// Whether events are stored for the workers to render (pg_callback.recording = deferred).
fn deferring() -> bool {
    RECORDING.get() == Recording::Deferred && has_events_table()
}

/// The array type of a parameter type, for statements taking a column of values.
fn array_of(name: &str) -> &'static str {
    match name {
        "text" => "text[]",
        "bigint" => "bigint[]",
        "bool" => "bool[]",
        "uuid" => "uuid[]",
        other => unreachable!("no array type for {other}"),
    }
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

/// The settings version a cache must have been read at to be used now; None when nothing may
/// be cached (not preloaded, or this transaction changed what recording caches).
fn cacheable_version() -> Option<u64> {
    shared::settings_version().filter(|_| !shared::settings_changed_here())
}

/// Runs `f` with the cache, made valid first (or, when nothing may be cached, a fresh one
/// used once).
fn with_cache<R>(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    f: impl FnOnce(&mut SpiClient<'_>, &mut Cache) -> SpiResult<R>,
) -> SpiResult<R> {
    let schema = plans::callback_schema();
    let version = cacheable_version();
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
        Some(c) if c.holds_for(version, schema) && c.sources.len() < CACHE_ENTRIES => c,
        _ => fresh(client)?,
    };
    let result = f(client, &mut cache);
    CACHE.set(Some(cache));
    result
}

/// Runs `f` with the cache when it is valid for this transaction (None otherwise: reading it
/// takes statements).
fn cached<R>(f: impl FnOnce(&Cache) -> R) -> Option<R> {
    let version = cacheable_version()?;
    let schema = plans::callback_schema();
    // Taken out while `f` runs, which may raise an error (one not valid is dropped).
    let cache = CACHE.take().filter(|c| c.holds_for(version, schema))?;
    let result = f(&cache);
    CACHE.set(Some(cache));
    Some(result)
}

/// Runs `f` as the owner of `function`, with search_path = pg_catalog, pg_temp: what SECURITY
/// DEFINER and that SET clause would do for the whole function. An error leaves the undoing
/// to the (sub)transaction's abort, as it does for them.
fn as_owner<R>(function: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let owner = pgrx::pg_catalog::pg_proc::PgProc::new(function)
        .map(|proc| proc.proowner())
        .unwrap_or_else(|| error!("pg_callback: function {function:?} not found"));
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: the user and security context are read, changed and restored as
    // fmgr_security_definer does it.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let result = plans::with_settings(&[(c"search_path", c"pg_catalog, pg_temp")], f);
    // SAFETY: as above.
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}

impl Cache {
    /// Whether it was read at settings `version` for the `callback` schema `schema`.
    fn holds_for(&self, version: u64, schema: pg_sys::Oid) -> bool {
        self.version == version && self.schema == schema
    }

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

/// How an event's callbacks are rendered.
struct Rendering {
    /// When the event happened (Postgres timestamptz microseconds): the envelope's timestamp.
    at: pg_sys::TimestampTz,
    /// None: in the event's transaction, each callback inserted at once. Some: by a worker
    /// after the event committed, gathered for one insert per batch of events; a URL that
    /// cannot be filled is then recorded as a failed callback, as the change it reports can no
    /// longer be refused.
    gathered: Option<Vec<Rendered>>,
}

impl Rendering {
    /// In the transaction of the event, now.
    fn now() -> Rendering {
        Rendering {
            // SAFETY: reads the current transaction's start time (now()).
            at: unsafe { pg_sys::GetCurrentTransactionStartTimestamp() },
            gathered: None,
        }
    }
}

/// A callback rendered: a row of the queue but for its state, which the insert decides.
struct Rendered {
    event: String,
    account_id: i64,
    campaign_id: Option<i64>,
    message_id: Option<i64>,
    kind: &'static str,
    subscription_id: Option<i64>,
    url: String,
    method: String,
    headers: String,
    body: Option<String>,
    auth_header: Option<String>,
    signing_secret: Option<String>,
    retry_policy: String,
    order_key: String,
    held: bool,
    webhook_id: pgrx::Uuid,
}

impl Rendered {
    /// Inserts it (insert.sql); whether it is due now.
    fn insert(self, client: &mut SpiClient<'_>, plans: &Plans) -> SpiResult<bool> {
        let args = [
            self.event.into(),
            self.account_id.into(),
            self.campaign_id.into(),
            self.message_id.into(),
            self.kind.into(),
            self.subscription_id.into(),
            self.url.into(),
            self.method.into(),
            self.headers.into(),
            self.body.into(),
            self.auth_header.into(),
            self.signing_secret.into(),
            self.retry_policy.into(),
            self.order_key.into(),
            self.held.into(),
            self.webhook_id.into(),
        ];
        Ok(client
            .update(&plans.insert, None, &args)?
            .first()
            .get_one::<bool>()?
            .unwrap_or(false))
    }

    /// Inserts them all, in their order, with one statement (insert_batch.sql); whether any
    /// is due now.
    fn insert_all(all: Vec<Rendered>, client: &mut SpiClient<'_>, plans: &Plans) -> SpiResult<bool> {
        if all.is_empty() {
            return Ok(false);
        }
        macro_rules! column {
            ($field:ident) => {
                all.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
            };
        }
        // Behind an earlier callback of its order key in the batch: it waits for that one.
        let mut keys = std::collections::HashSet::new();
        let behind: Vec<bool> = all.iter().map(|r| !keys.insert(r.order_key.as_str())).collect();
        let args = [
            column!(event).into(),
            column!(account_id).into(),
            column!(campaign_id).into(),
            column!(message_id).into(),
            all.iter().map(|r| r.kind.to_string()).collect::<Vec<_>>().into(),
            column!(subscription_id).into(),
            column!(url).into(),
            column!(method).into(),
            column!(headers).into(),
            column!(body).into(),
            column!(auth_header).into(),
            column!(signing_secret).into(),
            column!(retry_policy).into(),
            column!(order_key).into(),
            column!(held).into(),
            column!(webhook_id).into(),
            behind.into(),
        ];
        let due = client
            .update(&plans.insert_batch, None, &args)?
            .first()
            .get_one::<bool>()?;
        Ok(due.unwrap_or(false))
    }
}

/// Records `event` for each of its targets: the URL filled from `vars` (plus `event`), the
/// body from the envelope `{type, timestamp, data}`. Wakes the workers at commit when one is
/// due now (not held, not waiting behind another).
#[allow(clippy::too_many_arguments)]
fn record(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    event: &str,
    scope: &Scope,
    sources: &Sources,
    vars: &Map<String, Value>,
    data: &Value,
    rendering: &mut Rendering,
) -> SpiResult<()> {
    let mut targets: Vec<(&'static str, Option<i64>, Delivery, bool)> = Vec::new();
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
    let envelope = json!({"type": event, "timestamp": iso(rendering.at), "data": data});
    let order_scope = match (scope.message_id, scope.campaign_id) {
        (Some(id), _) => format!("message:{id}"),
        (None, Some(id)) => format!("campaign:{id}"),
        (None, None) => String::new(),
    };
    let mut due = false;
    for (kind, subscription_id, delivery, held) in targets {
        let url = match template::render(&delivery.url, &vars) {
            Ok(url) => url,
            Err(error) => {
                let error = CallbackError::Template {
                    template: delivery.url.clone(),
                    error,
                };
                if rendering.gathered.is_none() {
                    error.raise();
                }
                let args = [
                    event.into(),
                    scope.account_id.into(),
                    scope.campaign_id.into(),
                    scope.message_id.into(),
                    kind.into(),
                    subscription_id.into(),
                    delivery.url.as_str().into(),
                    delivery.method.as_str().into(),
                    delivery.retry_policy.as_str().into(),
                    format!("{order_scope} {}", delivery.url).into(),
                    error.text().into(),
                    webhook_id().into(),
                ];
                client.update(UNSENDABLE, None, &args)?;
                continue;
            }
        };
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
        let rendered = Rendered {
            event: event.to_string(),
            account_id: scope.account_id,
            campaign_id: scope.campaign_id,
            message_id: scope.message_id,
            kind,
            subscription_id,
            order_key: format!("{order_scope} {url}"),
            url,
            method: delivery.method,
            headers: Value::Object(headers).to_string(),
            body,
            auth_header,
            signing_secret: delivery.signing_secret,
            retry_policy: delivery.retry_policy,
            held,
            webhook_id: webhook_id(),
        };
        match &mut rendering.gathered {
            Some(gathered) => gathered.push(rendered),
            None => due |= rendered.insert(client, plans)?,
        }
    }
    if due {
        shared::wake_on_commit();
    }
    Ok(())
}

/// 2000-01-01, where Postgres counts timestamps from, in microseconds since 1970.
const POSTGRES_EPOCH_IN_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A Postgres timestamp as bodies write it.
fn iso(at: pg_sys::TimestampTz) -> String {
    render::iso_timestamp(at + POSTGRES_EPOCH_IN_UNIX_MICROS)
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

/// An event other than a message's status change (attempts, campaigns, alerts), with its
/// template variables and data made by its PL/pgSQL trigger.
struct Named {
    event: String,
    account_id: i64,
    campaign_id: Option<i64>,
    message_id: Option<i64>,
    /// The list of a message outside campaigns (its member's).
    list_id: Option<i64>,
    channel: Option<String>,
    notify_url: Option<String>,
    notify_format: Option<String>,
    vars: Value,
    data: Value,
}

impl Named {
    fn record(
        &self,
        client: &mut SpiClient<'_>,
        plans: &Plans,
        cache: &mut Cache,
        rendering: &mut Rendering,
    ) -> SpiResult<()> {
        let scope = Scope {
            account_id: self.account_id,
            campaign_id: self.campaign_id,
            message_id: self.message_id,
            channel: self.channel.as_deref(),
            notify_url: self.notify_url.as_deref(),
            notify_format: self.notify_format.as_deref(),
        };
        let vars = match &self.vars {
            Value::Object(map) => map,
            _ => &Map::new(),
        };
        let sources = cache.sources(client, plans, (self.campaign_id, self.list_id, self.account_id))?;
        record(
            client,
            plans,
            &self.event,
            &scope,
            &sources,
            vars,
            &self.data,
            rendering,
        )
    }
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
    let named = Named {
        event: event.to_string(),
        account_id,
        campaign_id,
        message_id,
        list_id,
        channel: channel.map(str::to_string),
        notify_url: notify_url.map(str::to_string),
        notify_format: notify_format.map(str::to_string),
        vars: vars.0,
        data: data.0,
    };
    recording(
        format_args!("recording {event}"),
        |client, plans, cache| match deferring() {
            true => {
                store(&Event::Named(named));
                Ok(())
            }
            false => with_generic_plans(|| named.record(client, plans, cache, &mut Rendering::now())),
        },
    );
}

/// A message whose status changed, as recording reads it: a row of `callback.messages`, or of
/// an application's own table attached with `callback.attach()`.
pub struct Message {
    pub id: i64,
    pub account_id: i64,
    pub campaign_id: Option<i64>,
    /// The list of a message outside campaigns, when its table names one (attached tables);
    /// otherwise its member's.
    pub list_id: Option<i64>,
    pub member_id: Option<i64>,
    pub batch_id: Option<String>,
    pub channel: Option<String>,
    pub destination: Option<String>,
    pub status: String,
    pub previous: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub callback_data: Option<String>,
    pub notify_url: Option<String>,
    pub notify_format: Option<String>,
    pub created_at: Option<pg_sys::TimestampTz>,
    pub status_at: Option<pg_sys::TimestampTz>,
    /// Whether every status is reported, not only final ones.
    pub intermediate: bool,
    /// Whether its attempts are in `callback.attempts` (not for attached tables).
    pub has_attempts: bool,
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

/// A status change of `m` that records something (`events`): stored for later with
/// pg_callback.recording = deferred, its callbacks recorded now with immediate.
fn status_changed(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    cache: &mut Cache,
    m: Message,
    events: StatusEvents,
) -> SpiResult<()> {
    match deferring() {
        true => {
            store(&Event::Status(m));
            Ok(())
        }
        false => with_generic_plans(|| record_message(client, plans, cache, &m, events, &mut Rendering::now())),
    }
}

/// Records message.status (final statuses, or every status with intermediate reports), the
/// event the status fires (message.sent, message.problem), and message.final when the message
/// first becomes final.
fn record_message(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    cache: &mut Cache,
    m: &Message,
    events: StatusEvents,
    rendering: &mut Rendering,
) -> SpiResult<()> {
    let StatusEvents {
        is_final,
        fires,
        was_final,
    } = events;
    let (member_list_id, member_attributes) = match m.member_id {
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
    let campaign_list_id = sources.campaign_list_id;

    // Variables: member attributes, then campaign env, then the built-ins.
    let mut vars = json_object(member_attributes);
    vars.extend(sources.campaign_env.clone());
    let builtins = [
        ("id", json!(m.id)),
        ("messageId", json!(m.id)),
        ("memberId", json!(m.member_id)),
        ("campaignId", json!(m.campaign_id)),
        ("communicationId", json!(m.campaign_id)),
        ("listId", json!(campaign_list_id.or(list_id))),
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
        "created_at": m.created_at.map(iso),
        "status_at": m.status_at.map(iso),
    });
    let scope = Scope {
        account_id: m.account_id,
        campaign_id: m.campaign_id,
        message_id: Some(m.id),
        channel: m.channel.as_deref(),
        notify_url: m.notify_url.as_deref(),
        notify_format: m.notify_format.as_deref(),
    };
    let mut record = |client: &mut SpiClient<'_>, event: &str, data: &Value| {
        record(client, plans, event, &scope, &sources, &vars, data, rendering)
    };
    if is_final || m.intermediate {
        record(client, "message.status", &data)?;
    }
    if let Some(fires) = &fires {
        record(client, fires, &data)?;
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
        record(client, "message.final", &data)?;
    }
    Ok(())
}

/// An event: a message's status change, or any other.
enum Event {
    Status(Message),
    Named(Named),
}

/// Stores an event in `callback.events` (pg_callback.recording = deferred) and wakes the
/// workers at commit, who render its callbacks.
fn store(event: &Event) {
    use event_row::Value::{Bool, Int, Json, Text, Time};
    match event {
        Event::Status(m) => event_row::insert(&[
            ("account_id", Int(Some(m.account_id))),
            ("campaign_id", Int(m.campaign_id)),
            ("message_id", Int(Some(m.id))),
            ("list_id", Int(m.list_id)),
            ("member_id", Int(m.member_id)),
            ("batch_id", Text(m.batch_id.as_deref())),
            ("channel", Text(m.channel.as_deref())),
            ("destination", Text(m.destination.as_deref())),
            ("status", Text(Some(&m.status))),
            ("previous_status", Text(m.previous.as_deref())),
            ("error_code", Text(m.error_code.as_deref())),
            ("error_message", Text(m.error_message.as_deref())),
            ("callback_data", Text(m.callback_data.as_deref())),
            ("notify_url", Text(m.notify_url.as_deref())),
            ("notify_format", Text(m.notify_format.as_deref())),
            ("created_at", Time(m.created_at)),
            ("status_at", Time(m.status_at)),
            ("intermediate_reports", Bool(Some(m.intermediate))),
            ("has_attempts", Bool(Some(m.has_attempts))),
        ]),
        Event::Named(n) => event_row::insert(&[
            ("event", Text(Some(&n.event))),
            ("account_id", Int(Some(n.account_id))),
            ("campaign_id", Int(n.campaign_id)),
            ("message_id", Int(n.message_id)),
            ("list_id", Int(n.list_id)),
            ("channel", Text(n.channel.as_deref())),
            ("notify_url", Text(n.notify_url.as_deref())),
            ("notify_format", Text(n.notify_format.as_deref())),
            ("vars", Json(Some(&n.vars))),
            ("data", Json(Some(&n.data))),
        ]),
    }
    shared::events_on_commit();
}

/// An event taken from `callback.events`, with its id and time.
struct Taken {
    id: i64,
    at: pg_sys::TimestampTz,
    event: Event,
}

/// The columns take.sql returns, in its order: read by position, as a name costs a lookup
/// among them per value.
const TAKEN: [&str; 24] = [
    "id",
    "recorded_at",
    "event",
    "account_id",
    "campaign_id",
    "message_id",
    "list_id",
    "member_id",
    "batch_id",
    "channel",
    "destination",
    "status",
    "previous_status",
    "error_code",
    "error_message",
    "callback_data",
    "notify_url",
    "notify_format",
    "created_at",
    "status_at",
    "intermediate_reports",
    "has_attempts",
    "vars",
    "data",
];

impl Taken {
    fn of(row: &SpiHeapTupleData) -> SpiResult<Taken> {
        let get = |name: &str| TAKEN.iter().position(|c| *c == name).expect("a column of take.sql") + 1;
        let text = |name: &str| row.get::<String>(get(name));
        let number = |name: &str| row.get::<i64>(get(name));
        let flag = |name: &str| row.get::<bool>(get(name));
        let json = |name: &str| -> SpiResult<Value> { Ok(row.get::<JsonB>(get(name))?.map_or(Value::Null, |j| j.0)) };
        let time = |name: &str| -> SpiResult<Option<pg_sys::TimestampTz>> {
            Ok(row.get::<TimestampWithTimeZone>(get(name))?.map(Into::into))
        };
        let account_id = number("account_id")?.unwrap_or_default();
        let event = match text("event")? {
            None => Event::Status(Message {
                id: number("message_id")?.unwrap_or_default(),
                account_id,
                campaign_id: number("campaign_id")?,
                list_id: number("list_id")?,
                member_id: number("member_id")?,
                batch_id: text("batch_id")?,
                channel: text("channel")?,
                destination: text("destination")?,
                status: text("status")?.unwrap_or_default(),
                previous: text("previous_status")?,
                error_code: text("error_code")?,
                error_message: text("error_message")?,
                callback_data: text("callback_data")?,
                notify_url: text("notify_url")?,
                notify_format: text("notify_format")?,
                created_at: time("created_at")?,
                status_at: time("status_at")?,
                intermediate: flag("intermediate_reports")?.unwrap_or(false),
                has_attempts: flag("has_attempts")?.unwrap_or(false),
            }),
            Some(event) => Event::Named(Named {
                event,
                account_id,
                campaign_id: number("campaign_id")?,
                message_id: number("message_id")?,
                list_id: number("list_id")?,
                channel: text("channel")?,
                notify_url: text("notify_url")?,
                notify_format: text("notify_format")?,
                vars: json("vars")?,
                data: json("data")?,
            }),
        };
        Ok(Taken {
            id: number("id")?.unwrap_or_default(),
            at: time("recorded_at")?.unwrap_or_default(),
            event,
        })
    }
}

/// Renders the callbacks of up to `max` events of `callback.events`, oldest first, and deletes
/// them; returns how many were taken. One caller at a time: another returns -1 at once, so the
/// callbacks of one order key are made in the order their events were recorded. A URL that
/// cannot be filled makes a failed callback saying why.
#[pg_extern(volatile, parallel_unsafe, name = "_expand_events")]
pub fn expand_events(max: i32) -> i32 {
    let mut taken = 0;
    recording("rendering recorded events", |client, plans, cache| {
        with_generic_plans(|| {
            let Some(mut events) = plans::with(&EVENT_PLANS, client, prepare_event_plans, |client, event_plans| {
                if !client
                    .select(&event_plans.lock, Some(1), &[])?
                    .first()
                    .get_one::<bool>()?
                    .unwrap_or(false)
                {
                    taken = -1;
                    return Ok(None);
                }
                let taken = client.update(&event_plans.take, None, &[max.into()])?;
                Ok(Some(taken.map(|row| Taken::of(&row)).collect::<SpiResult<Vec<_>>>()?))
            })?
            else {
                return Ok(());
            };
            events.sort_by_key(|e| e.id);
            taken = events.len() as i32;
            let mut rendering = Rendering {
                at: 0,
                gathered: Some(Vec::new()),
            };
            for Taken { at, event, .. } in events {
                rendering.at = at;
                match event {
                    Event::Status(m) => {
                        let events = StatusEvents::of(cache, &m.status, m.previous.as_deref());
                        record_message(client, plans, cache, &m, events, &mut rendering)?
                    }
                    Event::Named(n) => n.record(client, plans, cache, &mut rendering)?,
                }
            }
            if Rendered::insert_all(rendering.gathered.unwrap_or_default(), client, plans)? {
                shared::wake_on_commit();
            }
            Ok(())
        })
    });
    taken
}

/// A status change of a message of `callback.messages` (`previous` None: inserted), for the
/// triggers of src/triggers.rs: refuses a status not in `callback.statuses` and records what
/// the change means, with `message` read only when something is recorded. Its statements run
/// as the owner of `function`, with no say for the caller's search_path (`as_owner`), as
/// SECURITY DEFINER would run them; storing an event for later with the statuses cached, the
/// usual case with pg_callback.recording = deferred, runs none, and the change needs no
/// definer's setup.
pub fn message_status(
    function: pg_sys::Oid,
    status: &str,
    previous: Option<&str>,
    notify: bool,
    intermediate: bool,
    message: impl FnOnce() -> Message,
) {
    // What the change means, from the statuses.
    let means = |cache: &Cache| {
        if !cache.statuses.contains_key(status) {
            CallbackError::UnknownStatus(status.to_string()).raise();
        }
        let events = StatusEvents::of(cache, status, previous);
        (notify && events.record_any(intermediate)).then_some(events)
    };
    if deferring() {
        if let Some(recorded) = cached(means) {
            if recorded.is_some() {
                store(&Event::Status(message()));
            }
            return;
        }
    }
    as_owner(function, || {
        recording(
            "recording the status of a message",
            |client, plans, cache| match means(cache) {
                Some(events) => status_changed(client, plans, cache, message(), events),
                None => Ok(()),
            },
        )
    });
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
    let data = trigger.trigger_data();
    let new = Row::new(data);
    let value = |row: &Row, field: &str| columns.get(field).and_then(|column| row.text(column));
    let Some(status) = value(&new, "status") else {
        return Ok(None);
    };
    let previous = Row::old(data).and_then(|old| value(&old, "status"));
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
            created_at: None,
            // SAFETY: reads the current transaction's start time (now()).
            status_at: Some(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }),
            intermediate: false,
            has_attempts: false,
        };
        status_changed(client, plans, cache, message, events)
    });
    Ok(None)
}

/// A JSON object given as text (member attributes, campaign env); empty when NULL.
fn json_object(text: Option<String>) -> Map<String, Value> {
    match text.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    }
}
