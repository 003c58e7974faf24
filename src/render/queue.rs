//! Rendered callbacks into `callback.requests` and the queue (`callback.callbacks_undone`):
//! one at a time in the event's transaction (immediate recording), a batch per statement from
//! a worker (deferred, leasing to itself those it can send soon), or, when one could not be
//! rendered after commit, a failed callback saying why.
//!
//! In: core `Callback`s. Out: rows of sql/render/insert.sql, insert_batch.sql, unsendable.sql;
//! whether any is due now for whoever claims it (the workers are then woken at commit), and
//! which the worker leased.

use super::plans::Plans;
use pg_callback_core::callback::{self, order_key, Callback};
use pg_callback_core::event::Scope;
use pg_callback_core::target::Target;
use pg_callback_core::webhook_id::{self, Installation};
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::{Cell, RefCell};

const UNSENDABLE: &str = include_str!("../../sql/render/unsendable.sql");
const COMPAT_UNSENDABLE: &str = include_str!("../../sql/compat/unsendable.sql");

thread_local! {
    /// This backend's random generator, with the process it was seeded in.
    static RANDOM: RefCell<Option<(i32, StdRng)>> = const { RefCell::new(None) };
    /// Set in a worker: the callbacks of stored events get ids derived from them.
    static INSTALLATION: Cell<Option<Installation>> = const { Cell::new(None) };
}

/// From now on in this backend, the callbacks of stored events get webhook-ids derived from
/// the event and target (pg_callback_core::webhook_id), so that rendering an event again
/// after a crash undid its first rendering sends what receivers already have under the same
/// ids. Workers call it, whose commits wait for no disk (src/deliver/worker.rs).
pub fn derive_webhook_ids(extension: pg_sys::Oid) {
    // SAFETY: reads the cluster's identifier from the control file's copy in memory, and this
    // backend's database.
    let (system_identifier, database) = unsafe { (pg_sys::GetSystemIdentifier(), pg_sys::MyDatabaseId) };
    INSTALLATION.set(Some(Installation {
        system_identifier,
        database: database.to_u32(),
        extension: extension.to_u32(),
    }));
}

/// The webhook-id of the callback of `event` for the target of `kind` and `subscription`:
/// derived when the event was stored (its id) and this backend derives them, else random.
pub(super) fn webhook_id_of(stored: Option<i64>, event: &str, kind: &str, subscription: Option<i64>) -> pgrx::Uuid {
    match (stored, INSTALLATION.get()) {
        (Some(event_id), Some(installation)) => {
            pgrx::Uuid::from_bytes(webhook_id::derived(&installation, event_id, event, kind, subscription))
        }
        _ => webhook_id(),
    }
}

/// A new random (version 4) UUID, a callback's webhook-id. `gen_random_uuid()` asks OpenSSL
/// for every one, which cost a tenth of recording; this generator is seeded from the operating
/// system once per process (and again in a forked one).
pub(super) fn webhook_id() -> pgrx::Uuid {
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

/// Inserts one callback (insert.sql); whether it is due now.
pub fn insert(c: Callback, client: &mut SpiClient<'_>, plans: &Plans) -> SpiResult<bool> {
    let args = [
        c.event.into(),
        c.account_id.into(),
        c.campaign_id.into(),
        c.message_id.into(),
        c.kind.as_str().into(),
        c.subscription_id.into(),
        c.url.into(),
        c.method.into(),
        c.headers.into(),
        c.body.into(),
        c.auth_header.into(),
        c.signing_secret.into(),
        c.retry_policy.into(),
        c.order_key.into(),
        c.held.into(),
        webhook_id().into(),
    ];
    let due = client.update(&plans.insert, None, &args)?.first().get_one::<bool>()?;
    Ok(due.unwrap_or(false))
}

/// A worker rendering callbacks leases those it can send soon as it inserts them, so that it
/// sends them without claiming them after (src/deliver/claim.rs).
pub struct Lease<'a> {
    /// The worker's pid.
    pub worker: i32,
    /// How long the lease lasts, as the claim reckons it: this many rounds of the longest
    /// timeout (`default_timeout`, in seconds, for policies that set none), plus a minute.
    pub rounds: i32,
    pub default_timeout: f64,
    /// How many it can take, and the endpoints it has as many of as it can send soon.
    pub count: usize,
    pub full_endpoints: &'a [String],
}

/// Inserts them all with their webhook-ids, in their order, with one statement
/// (insert_batch.sql), those `lease` says leased to its worker; whether any is due now for
/// whoever claims it, and the ids of those leased.
pub fn insert_all(
    all: Vec<(Callback, pgrx::Uuid)>,
    lease: Option<&Lease<'_>>,
    client: &mut SpiClient<'_>,
    plans: &Plans,
) -> SpiResult<(bool, Vec<i64>)> {
    if all.is_empty() {
        return Ok((false, Vec::new()));
    }
    let (all, ids): (Vec<Callback>, Vec<pgrx::Uuid>) = all.into_iter().unzip();
    macro_rules! column {
        ($field:ident) => {
            all.iter().map(|c| c.$field.clone()).collect::<Vec<_>>()
        };
    }
    let placed = match lease {
        Some(lease) => callback::place(&all, lease.count, lease.full_endpoints),
        None => callback::place(&all, 0, &[]),
    };
    let args = [
        column!(event).into(),
        column!(account_id).into(),
        column!(campaign_id).into(),
        column!(message_id).into(),
        all.iter()
            .map(|c| c.kind.as_str().to_string())
            .collect::<Vec<_>>()
            .into(),
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
        ids.into(),
        placed.behind.into(),
        placed.leased.into(),
        lease.map(|l| l.worker).into(),
        lease.map_or(0, |l| l.rounds).into(),
        lease.map_or(0.0, |l| l.default_timeout).into(),
    ];
    let row = client.update(&plans.insert_batch, None, &args)?.first();
    let due = row.get::<bool>(1)?.unwrap_or(false);
    let leased = row.get::<Vec<i64>>(2)?.unwrap_or_default();
    Ok((due, leased))
}

/// Records a callback of `event` for `target` that could not be rendered, failed with `error`.
pub fn unsendable(
    client: &mut SpiClient<'_>,
    stored: Option<i64>,
    event: &str,
    scope: &Scope,
    chosen: (&str, Option<i64>, &Target),
    error: String,
) -> SpiResult<()> {
    let (kind, subscription_id, target) = chosen;
    let args = [
        event.into(),
        scope.account_id.into(),
        scope.campaign_id.into(),
        scope.message_id.into(),
        kind.into(),
        subscription_id.into(),
        target.url.as_str().into(),
        target.method.as_str().into(),
        target.retry_policy.as_str().into(),
        order_key(scope, &target.url).into(),
        error.into(),
        webhook_id_of(stored, event, kind, subscription_id).into(),
    ];
    let unsendable = match crate::pg::spi::split_callbacks() {
        true => UNSENDABLE,
        false => COMPAT_UNSENDABLE,
    };
    client.update(unsendable, None, &args)?;
    Ok(())
}
