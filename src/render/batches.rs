//! Batched reports: an event rendered for a batching target waits in `callback.batch_events`;
//! a worker, when it renders, makes each batch a callback once it is full or its first event
//! has waited its max_wait (sql/batching.sql says how the parts fit together).
//!
//! In: rendered callbacks of batching targets, with their envelopes. Out: rows of
//! `callback.batch_events`, then callbacks carrying `{"results": [...]}` (pg_callback_core::batch
//! makes the bodies), each batch's events linked to its callback.
//! SQL: sql/render/batch_*.sql.

use crate::pg::spi::{self, types, Kept};
use pg_callback_core::batch::{self, Batching, Waiting};
use pg_callback_core::body::Format;
use pg_callback_core::callback::Callback;
use pg_callback_core::target::Kind;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiHeapTupleData, SpiResult};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;

const ADD: &str = include_str!("../../sql/render/batch_add.sql");
const DUE: &str = include_str!("../../sql/render/batch_due.sql");
const WAITING: &str = include_str!("../../sql/render/batch_waiting.sql");
const MAKE: &str = include_str!("../../sql/render/batch_make.sql");
const NEXT: &str = include_str!("../../sql/render/batch_next.sql");
const BEHIND: &str = include_str!("../../sql/render/batch_behind.sql");
const UNDONE: &str = include_str!("../../sql/render/batch_undone.sql");

struct BatchPlans {
    add: OwnedPreparedStatement,
    due: OwnedPreparedStatement,
    waiting: OwnedPreparedStatement,
    make: OwnedPreparedStatement,
    next: OwnedPreparedStatement,
    behind: OwnedPreparedStatement,
    undone: OwnedPreparedStatement,
}

thread_local! {
    /// Prepared when first needed: a schema before 0.3.0 has no batch_events.
    static PLANS: Kept<BatchPlans> = const { RefCell::new(None) };
    /// When the first event left waiting by this backend's last batching may go (Unix ms).
    static NEXT_SEND_BY: Cell<Option<i64>> = const { Cell::new(None) };
    /// Whether batches were made since `batches_made` was last asked.
    static MADE: Cell<bool> = const { Cell::new(false) };
}

const ADD_ARGS: [&str; 18] = [
    "bigint[]", "text[]", "text[]", "bigint[]", "bigint[]", "float8[]", "int[]", "int[]", "text[]", "text[]",
    "bigint[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text[]",
];
const MAKE_ARGS: [&str; 17] = [
    "text", "bigint", "bigint", "bigint", "text", "bigint", "text", "text", "text", "text", "text", "text", "text",
    "text", "uuid", "int", "bigint[]",
];

fn prepare(client: &mut SpiClient<'_>) -> SpiResult<BatchPlans> {
    Ok(BatchPlans {
        add: client.prepare_mut(ADD, &types(&ADD_ARGS))?.keep(),
        due: client.prepare(DUE, &[])?.keep(),
        waiting: client.prepare(WAITING, &types(&["text"]))?.keep(),
        make: client.prepare_mut(MAKE, &types(&MAKE_ARGS))?.keep(),
        next: client.prepare(NEXT, &[])?.keep(),
        behind: client.prepare_mut(BEHIND, &types(&["bigint", "bigint[]"]))?.keep(),
        undone: client.prepare(UNDONE, &types(&["text", "bigint[]"]))?.keep(),
    })
}

/// An event rendered for a batching target, to wait for its batch.
pub struct Item {
    /// The callback it would have been alone, its body the event's envelope (JSON).
    callback: Callback,
    format: Format,
    batching: Batching,
    /// When its batch goes at the latest (Unix seconds).
    send_by: f64,
}

impl Item {
    /// `c` rendered for a target batching as `batching`, from `envelope`, recorded at `at`
    /// (a Postgres `timestamptz`).
    pub fn new(mut c: Callback, envelope: &Value, format: Format, batching: Batching, at: pg_sys::TimestampTz) -> Item {
        c.body = Some(envelope.to_string());
        Item {
            callback: c,
            format,
            batching,
            send_by: batching.send_by(at),
        }
    }
}

/// Whether the schema has batching: not before 0.3.0, until `ALTER EXTENSION pg_callback UPDATE`.
pub fn in_schema() -> bool {
    spi::has_column(c"batch_events", c"callback_id")
}

/// Adds the items to `callback.batch_events`, in their order, with one statement.
pub fn add(client: &mut SpiClient<'_>, items: Vec<Item>) -> SpiResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    macro_rules! column {
        ($value:expr) => {
            items.iter().map($value).collect::<Vec<_>>().into()
        };
    }
    let args = [
        column!(|i: &Item| i.callback.account_id),
        column!(|i: &Item| batch::key(
            i.callback.kind.as_str(),
            i.callback.subscription_id,
            i.callback.campaign_id,
            &i.callback.url
        )),
        column!(|i: &Item| i.callback.event.clone()),
        column!(|i: &Item| i.callback.campaign_id),
        column!(|i: &Item| i.callback.message_id),
        column!(|i: &Item| i.send_by),
        column!(|i: &Item| i.batching.max_count as i32),
        column!(|i: &Item| i.batching.max_bytes as i32),
        column!(|i: &Item| i.format.name().to_string()),
        column!(|i: &Item| i.callback.kind.as_str().to_string()),
        column!(|i: &Item| i.callback.subscription_id),
        column!(|i: &Item| i.callback.url.clone()),
        column!(|i: &Item| i.callback.method.clone()),
        column!(|i: &Item| i.callback.headers.clone()),
        column!(|i: &Item| i.callback.body.clone()),
        column!(|i: &Item| i.callback.auth_header.clone()),
        column!(|i: &Item| i.callback.signing_secret.clone()),
        column!(|i: &Item| i.callback.retry_policy.clone()),
    ];
    spi::with(&PLANS, client, prepare, |client, plans| {
        client.update(&plans.add, None, &args).map(drop)
    })
}

/// An event waiting, as batch_waiting.sql returns it.
struct Row {
    id: i64,
    event: String,
    message_id: Option<i64>,
    overdue: bool,
    /// Whether its message has an event in an undone batch of the target.
    behind: bool,
    /// What it is sent with, as text: events with different ones never share a batch.
    template: String,
    envelope: String,
    /// What it is sent with.
    sent_with: Callback,
}

/// Makes every batch due now a callback (sql/render/batch_make.sql); remembers when the first
/// event left waiting may go (`next_send_by`). `more_coming`: more events are being rendered,
/// which may fill the batches not full yet. Whether any batch made is due now.
pub fn make_due(client: &mut SpiClient<'_>, more_coming: bool) -> SpiResult<bool> {
    spi::with(&PLANS, client, prepare, |client, plans| {
        let keys: Vec<String> = client
            .select(&plans.due, None, &[])?
            .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<SpiResult<_>>()?;
        let mut due_now = false;
        for key in keys {
            due_now |= make_batches(client, plans, &key, more_coming)?;
        }
        // An aggregate: one row, NULL when no event waits.
        let next = client.select(&plans.next, Some(1), &[])?.first().get_one::<f64>()?;
        NEXT_SEND_BY.set(next.map(|ms| ms as i64));
        Ok(due_now)
    })
}

/// Whether batches were made since the last call.
pub fn batches_made() -> bool {
    MADE.replace(false)
}

/// When the first event left waiting by the last `make_due` of this backend may go (Unix ms).
pub fn next_send_by() -> Option<i64> {
    NEXT_SEND_BY.get()
}

/// The batches of one target, campaign and URL.
fn make_batches(client: &mut SpiClient<'_>, plans: &BatchPlans, key: &str, more_coming: bool) -> SpiResult<bool> {
    let table = client.select(&plans.waiting, None, &[key.into()])?;
    let mut rows = Vec::new();
    let mut limits = None;
    for row in table {
        if limits.is_none() {
            limits = Some(limits_of(&row)?);
        }
        rows.push(Row {
            id: row.get_by_name("id")?.unwrap_or_default(),
            event: row.get_by_name("event")?.unwrap_or_default(),
            message_id: row.get_by_name("message_id")?,
            overdue: row.get_by_name("overdue")?.unwrap_or(true),
            behind: false,
            template: row.get_by_name("template")?.unwrap_or_default(),
            envelope: row.get_by_name("envelope")?.unwrap_or_default(),
            sent_with: sent_with(&row)?,
        });
    }
    let Some((format, batching)) = limits else {
        return Ok(false);
    };
    let messages: Vec<i64> = rows.iter().filter_map(|r| r.message_id).collect();
    let behind: HashSet<i64> = client
        .select(&plans.undone, None, &[key.into(), messages.into()])?
        .map(|row| row.get::<i64>(1).map(Option::unwrap_or_default))
        .collect::<SpiResult<_>>()?;
    for r in &mut rows {
        r.behind = r.message_id.is_some_and(|m| behind.contains(&m));
    }
    let waiting: Vec<Waiting<'_>> = rows
        .iter()
        .map(|r| Waiting {
            envelope: &r.envelope,
            template: &r.template,
            overdue: r.overdue,
            message_id: r.message_id,
            behind: r.behind,
        })
        .collect();
    let made = batch::batches(format, &batching, &waiting, more_coming);
    let mut in_batch = vec![false; rows.len()];
    let mut due_now = false;
    for made in made {
        let events: Vec<&Row> = made.events.iter().map(|&i| &rows[i]).collect();
        made.events.iter().for_each(|&i| in_batch[i] = true);
        let first = events[0];
        let single_message = events.iter().all(|e| e.message_id == first.message_id);
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        let c = &first.sent_with;
        let args = [
            first.event.as_str().into(),
            c.account_id.into(),
            c.campaign_id.into(),
            first.message_id.filter(|_| single_message).into(),
            c.kind.as_str().into(),
            c.subscription_id.into(),
            c.url.as_str().into(),
            c.method.as_str().into(),
            c.headers.as_str().into(),
            made.body.into(),
            c.auth_header.clone().into(),
            c.signing_secret.clone().into(),
            c.retry_policy.as_str().into(),
            batch::order_key(key, first.id).into(),
            super::queue::webhook_id().into(),
            (ids.len() as i32).into(),
            ids.into(),
        ];
        let due = client.update(&plans.make, None, &args)?.first().get_one::<bool>()?;
        due_now |= due.unwrap_or(false);
        MADE.set(true);
    }
    // Those kept out behind an undone batch, already overdue: looked at again later.
    let kept_out: Vec<i64> = rows
        .iter()
        .zip(&in_batch)
        .filter(|(r, taken)| !**taken && r.overdue && !more_coming)
        .map(|(r, _)| r.id)
        .collect();
    if !kept_out.is_empty() {
        let account_id = rows[0].sent_with.account_id;
        client.update(&plans.behind, None, &[account_id.into(), kept_out.into()])?;
    }
    Ok(due_now)
}

/// What a waiting event is sent with.
fn sent_with(row: &SpiHeapTupleData) -> SpiResult<Callback> {
    let text = |name: &str| row.get_by_name::<String, _>(name);
    Ok(Callback {
        event: String::new(),
        account_id: row.get_by_name("account_id")?.unwrap_or_default(),
        campaign_id: row.get_by_name("campaign_id")?,
        message_id: None,
        kind: Kind::parse(&text("target")?.unwrap_or_default()).unwrap_or(Kind::List),
        subscription_id: row.get_by_name("subscription_id")?,
        url: text("url")?.unwrap_or_default(),
        method: text("method")?.unwrap_or_default(),
        headers: text("headers")?.unwrap_or_default(),
        body: None,
        auth_header: text("auth_header")?,
        signing_secret: text("signing_secret")?,
        retry_policy: text("retry_policy")?.unwrap_or_default(),
        order_key: String::new(),
        held: false,
    })
}

/// The format and limits of a target's batches: those its first waiting event was rendered with.
fn limits_of(row: &SpiHeapTupleData) -> SpiResult<(Format, Batching)> {
    let format = row.get_by_name::<String, _>("format")?.unwrap_or_default();
    let batching = Batching {
        max_count: row.get_by_name::<i32, _>("max_count")?.unwrap_or(1).max(1) as usize,
        max_bytes: row.get_by_name::<i32, _>("max_bytes")?.unwrap_or(1 << 20).max(1) as usize,
        max_wait_ms: 0,
    };
    Ok((Format::parse(&format).unwrap_or(Format::Json), batching))
}
