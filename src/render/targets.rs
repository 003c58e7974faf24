//! Reading targets: a row of `callback._target_settings` into the core's `Sources`, and the
//! subscriptions that take an event.
//!
//! In: rows of sql/render/targets.sql and sql/render/subscriptions.sql. Out: core `Target`s.

use super::plans::Plans;
use pg_callback_core::batch::Batching;
use pg_callback_core::event::{json_object, Scope};
use pg_callback_core::target::{Kind, Sources, Target};
use pgrx::spi::{SpiClient, SpiError, SpiHeapTupleData, SpiResult};

/// The settings in columns `{prefix}url`, `{prefix}method` ... of a row; None when they are
/// NULL (no such campaign or list). The URL is empty when not set.
fn target_of(row: &SpiHeapTupleData, prefix: &str) -> SpiResult<Option<Target>> {
    let text = |name: &str| row.get_by_name::<String, _>(format!("{prefix}{name}"));
    let Some(method) = text("method")? else {
        return Ok(None);
    };
    Ok(Some(Target {
        url: text("url")?.unwrap_or_default(),
        method,
        format: text("format")?.unwrap_or_default(),
        headers: text("headers")?,
        basic_auth: text("basic_auth")?,
        bearer_token: text("bearer_token")?,
        signing_secret: text("signing_secret")?,
        retry_policy: text("retry_policy")?.unwrap_or_default(),
        batch: batching(row, &format!("{prefix}batch")),
    }))
}

/// A target's batching, from column `name` (callback._batching); None when not batched, or
/// when the schema (before 0.3.0) has no such column.
fn batching(row: &SpiHeapTupleData, name: &str) -> Option<Batching> {
    let text = row.get_by_name::<String, _>(name).ok().flatten()?;
    Batching::parse(&text)
}

/// What the targets of events at this campaign (or list of a message outside campaigns) and
/// account are chosen from.
pub fn sources(client: &mut SpiClient<'_>, plans: &Plans, key: SourcesKey) -> SpiResult<Sources> {
    let args = [key.0.into(), key.1.into(), key.2.into()];
    let table = client.select(&plans.targets, Some(1), &args)?.first();
    // _target_settings returns one row, whatever its arguments.
    let row = table.get_heap_tuple()?.ok_or(SpiError::InvalidPosition)?;
    let json = |name: &str| {
        row.get_by_name::<String, _>(name)
            .map(|text| json_object(text.as_deref()))
    };
    Ok(Sources {
        campaign: target_of(&row, "campaign_")?,
        campaign_events: row.get_by_name("campaign_events")?.unwrap_or_default(),
        campaign_event_urls: json("campaign_event_urls")?,
        campaign_alert_url: row.get_by_name("campaign_alert_url")?,
        campaign_enabled: row.get_by_name("campaign_enabled")?,
        list: target_of(&row, "list_")?,
        list_events: row.get_by_name("list_events")?.unwrap_or_default(),
        webhook_url: row.get_by_name("webhook_url")?,
        webhook_batch: batching(&row, "webhook_batch"),
        subscribed: row.get_by_name("subscribed")?.unwrap_or(false),
        campaign_list_id: row.get_by_name("campaign_list_id")?,
        campaign_env: json("campaign_env")?,
    })
}

/// What a set of target settings is read for: campaign, list (of a message outside
/// campaigns), account.
pub type SourcesKey = (Option<i64>, Option<i64>, i64);

/// A target an event is rendered for: where it came from, its subscription, how it is sent,
/// and whether it is held.
pub type Chosen = (Kind, Option<i64>, Target, bool);

/// Every target of `event`: the one most specific (pg_callback_core::target), then each
/// enabled subscription of the account that takes it, in id order.
pub fn of_event(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    event: &str,
    scope: &Scope,
    sources: &Sources,
) -> SpiResult<Vec<Chosen>> {
    let mut targets = Vec::new();
    if let Some(chosen) = sources.primary(event, scope) {
        targets.push((chosen.kind, None, chosen.target, chosen.held));
    }
    if sources.subscribed {
        let args = [scope.account_id.into(), event.into(), scope.channel.into()];
        for row in client.select(&plans.subscriptions, None, &args)? {
            // A subscription's method is NOT NULL.
            if let Some(target) = target_of(&row, "")? {
                targets.push((Kind::Subscription, row.get_by_name("id")?, target, false));
            }
        }
    }
    Ok(targets)
}
