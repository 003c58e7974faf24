//! Recording for an application's own message table, attached with `callback.attach()`
//! (sql/attach.sql): the trigger reads the columns its arguments name and records what
//! `callback.messages` would.
//!
//! In: a row of the attached table. Out: what src/record/mod.rs records for a message.

use crate::pg::row::Row;
use crate::pg::spi::{self, types, Kept};
use crate::render;
use pg_callback_core::event::Message;
use pgrx::datum::TryFromDatumError;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use std::cell::RefCell;
use std::collections::HashMap;

const ACCOUNT_OF: &str = include_str!("../../sql/record/account_of.sql");

thread_local! {
    static ACCOUNT_OF_PLAN: Kept<OwnedPreparedStatement> = const { RefCell::new(None) };
}

/// The account of a campaign, else of a list.
fn account_of(client: &mut SpiClient<'_>, campaign_id: Option<i64>, list_id: Option<i64>) -> SpiResult<Option<i64>> {
    let prepare = |client: &mut SpiClient<'_>| Ok(client.prepare(ACCOUNT_OF, &types(&["bigint", "bigint"]))?.keep());
    spi::with(&ACCOUNT_OF_PLAN, client, prepare, |client, plan| {
        let args = [campaign_id.into(), list_id.into()];
        client.select(plan, Some(1), &args)?.first().get_one::<i64>()
    })
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
    render::connected("recording the status of an attached message", |client, plans, cache| {
        let change = render::status_change(cache, &status, previous.as_deref());
        if !change.records_any(false) {
            return Ok(());
        }
        let (campaign_id, list_id) = (number("campaign_id"), number("list_id"));
        let account = account_of(client, campaign_id, list_id)?;
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
            attempt_ids: None,
        };
        super::message_changed(client, plans, cache, message, change)
    });
    Ok(None)
}
