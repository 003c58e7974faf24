//! The statements rendering runs, prepared once per backend (src/pg/spi.rs) and kept with
//! generic plans (src/render/mod.rs says why).
//!
//! SQL: sql/render/*.sql but take.sql and take_lock.sql (expand.rs) and unsendable.sql
//! (queue.rs, rare enough to run unprepared).

use crate::pg::spi::{self, types, Kept};
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use std::cell::RefCell;

const MEMBER: &str = include_str!("../../sql/render/member.sql");
const TARGETS: &str = include_str!("../../sql/render/targets.sql");
const SUBSCRIPTIONS: &str = include_str!("../../sql/render/subscriptions.sql");
const ATTEMPT_IDS: &str = include_str!("../../sql/render/attempt_ids.sql");
const STATUSES: &str = include_str!("../../sql/render/statuses.sql");
const INSERT: &str = include_str!("../../sql/render/insert.sql");
const INSERT_BATCH: &str = include_str!("../../sql/render/insert_batch.sql");
const COMPAT_INSERT: &str = include_str!("../../sql/compat/insert.sql");
const COMPAT_INSERT_BATCH: &str = include_str!("../../sql/compat/insert_batch.sql");

/// The parameters of insert.sql; insert_batch.sql takes an array of each, `behind`, and what
/// its worker leases.
const INSERT_ARGS: [&str; 16] = [
    "text", "bigint", "bigint", "bigint", "text", "bigint", "text", "text", "text", "text", "text", "text", "text",
    "text", "bool", "uuid",
];
const INSERT_BATCH_ARGS: [&str; 21] = [
    "text[]", "bigint[]", "bigint[]", "bigint[]", "text[]", "bigint[]", "text[]", "text[]", "text[]", "text[]",
    "text[]", "text[]", "text[]", "text[]", "bool[]", "uuid[]", "bool[]", "bool[]", "int", "int", "float8",
];

pub struct Plans {
    pub member: OwnedPreparedStatement,
    pub targets: OwnedPreparedStatement,
    pub subscriptions: OwnedPreparedStatement,
    pub insert: OwnedPreparedStatement,
    pub insert_batch: OwnedPreparedStatement,
    pub attempt_ids: OwnedPreparedStatement,
    pub statuses: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: Kept<Plans> = const { RefCell::new(None) };
}

/// Runs `f` with this backend's plans, prepared first if there are none for this schema.
pub fn with<R>(client: &mut SpiClient<'_>, f: impl FnOnce(&mut SpiClient<'_>, &Plans) -> SpiResult<R>) -> SpiResult<R> {
    spi::with(&PLANS, client, prepare, f)
}

/// subscriptions.sql; for a schema before 0.3.0, until `ALTER EXTENSION pg_callback UPDATE`,
/// without batching.
fn subscriptions_sql() -> String {
    match super::batches::in_schema() {
        true => SUBSCRIPTIONS.to_string(),
        false => SUBSCRIPTIONS.replace("callback._batching(s.account_id, 'subscription', s.id)", "NULL::text"),
    }
}

fn prepare(client: &mut SpiClient<'_>) -> SpiResult<Plans> {
    let (insert, insert_batch) = match spi::split_callbacks() {
        true => (INSERT, INSERT_BATCH),
        false => (COMPAT_INSERT, COMPAT_INSERT_BATCH),
    };
    Ok(Plans {
        member: client.prepare(MEMBER, &types(&["bigint"]))?.keep(),
        targets: client.prepare(TARGETS, &types(&["bigint", "bigint", "bigint"]))?.keep(),
        subscriptions: client
            .prepare(&subscriptions_sql(), &types(&["bigint", "text", "text"]))?
            .keep(),
        insert: client.prepare_mut(insert, &types(&INSERT_ARGS))?.keep(),
        insert_batch: client.prepare_mut(insert_batch, &types(&INSERT_BATCH_ARGS))?.keep(),
        attempt_ids: client.prepare(ATTEMPT_IDS, &types(&["bigint"]))?.keep(),
        statuses: client.prepare(STATUSES, &[])?.keep(),
    })
}
