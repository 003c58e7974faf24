//! Rendering events recorded for later (`pg_callback.recording = deferred`): a worker takes the
//! oldest from `callback.events`, renders their callbacks and deletes them, in one transaction
//! with its claim, leasing to itself those it can send soon (they need no claim then).
//!
//! In: rows of `callback.events` (sql/render/take.sql, under take_lock.sql). Out: callbacks,
//! one insert per batch; how many events were taken, and which callbacks were leased.

use super::{Lease, Plans, Rendering};
use crate::pg::spi::{self, types, Kept};
use pg_callback_core::event::{Event, Message, Other};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiHeapTupleData, SpiResult};
use pgrx::JsonB;
use serde_json::Value;
use std::cell::RefCell;

const TAKE_LOCK: &str = include_str!("../../sql/render/take_lock.sql");
const TAKE: &str = include_str!("../../sql/render/take.sql");

struct EventPlans {
    lock: OwnedPreparedStatement,
    take: OwnedPreparedStatement,
}

thread_local! {
    /// The statements on callback.events, prepared when first needed (a schema of 0.1.0 has
    /// no such table).
    static EVENT_PLANS: Kept<EventPlans> = const { RefCell::new(None) };
}

fn prepare(client: &mut SpiClient<'_>) -> SpiResult<EventPlans> {
    Ok(EventPlans {
        lock: client.prepare(TAKE_LOCK, &[])?.keep(),
        take: client.prepare_mut(TAKE, &types(&["int"]))?.keep(),
    })
}

/// The columns take.sql returns, in its order: read by position, as a name costs a lookup
/// among them per value.
#[rustfmt::skip]
#[derive(Clone, Copy)]
enum Taken {
    Id = 1, RecordedAt, Event, AccountId, CampaignId, MessageId, ListId, MemberId, BatchId,
    Channel, Destination, Status, PreviousStatus, ErrorCode, ErrorMessage, CallbackData,
    NotifyUrl, NotifyFormat, CreatedAt, StatusAt, IntermediateReports, HasAttempts, Vars, Data,
    AttemptIds,
}

/// An event read from a row of take.sql, with its id and when it was recorded.
fn taken(row: &SpiHeapTupleData) -> SpiResult<(i64, pg_sys::TimestampTz, Event)> {
    use Taken as T;
    let text = |c: Taken| row.get::<String>(c as usize);
    let number = |c: Taken| row.get::<i64>(c as usize);
    let flag = |c: Taken| row.get::<bool>(c as usize);
    let json = |c: Taken| -> SpiResult<Value> { Ok(row.get::<JsonB>(c as usize)?.map_or(Value::Null, |j| j.0)) };
    let time = |c: Taken| -> SpiResult<Option<pg_sys::TimestampTz>> {
        Ok(row.get::<TimestampWithTimeZone>(c as usize)?.map(Into::into))
    };
    let account_id = number(T::AccountId)?.unwrap_or_default();
    let event = match text(T::Event)? {
        None => Event::Status(Message {
            id: number(T::MessageId)?.unwrap_or_default(),
            account_id,
            campaign_id: number(T::CampaignId)?,
            list_id: number(T::ListId)?,
            member_id: number(T::MemberId)?,
            batch_id: text(T::BatchId)?,
            channel: text(T::Channel)?,
            destination: text(T::Destination)?,
            status: text(T::Status)?.unwrap_or_default(),
            previous: text(T::PreviousStatus)?,
            error_code: text(T::ErrorCode)?,
            error_message: text(T::ErrorMessage)?,
            callback_data: text(T::CallbackData)?,
            notify_url: text(T::NotifyUrl)?,
            notify_format: text(T::NotifyFormat)?,
            created_at: time(T::CreatedAt)?,
            status_at: time(T::StatusAt)?,
            intermediate: flag(T::IntermediateReports)?.unwrap_or(false),
            has_attempts: flag(T::HasAttempts)?.unwrap_or(false),
            attempt_ids: row.get::<Vec<i64>>(T::AttemptIds as usize)?,
        }),
        Some(event) => Event::Other(Other {
            event,
            account_id,
            campaign_id: number(T::CampaignId)?,
            message_id: number(T::MessageId)?,
            list_id: number(T::ListId)?,
            channel: text(T::Channel)?,
            notify_url: text(T::NotifyUrl)?,
            notify_format: text(T::NotifyFormat)?,
            vars: json(T::Vars)?,
            data: json(T::Data)?,
        }),
    };
    let id = number(T::Id)?.unwrap_or_default();
    Ok((id, time(T::RecordedAt)?.unwrap_or_default(), event))
}

/// Takes up to `max` events, oldest first, holding the one-renderer lock; None when another
/// renderer holds it.
fn take(client: &mut SpiClient<'_>, max: i32) -> SpiResult<Option<Vec<(i64, pg_sys::TimestampTz, Event)>>> {
    spi::with(&EVENT_PLANS, client, prepare, |client, plans| {
        let locked = client.select(&plans.lock, Some(1), &[])?.first().get_one::<bool>()?;
        if !locked.unwrap_or(false) {
            return Ok(None);
        }
        let rows = client.update(&plans.take, None, &[max.into()])?;
        let mut events = rows.map(|row| taken(&row)).collect::<SpiResult<Vec<_>>>()?;
        events.sort_by_key(|(id, _, _)| *id);
        Ok(Some(events))
    })
}

/// Renders the callbacks of up to `max` events of `callback.events`, oldest first, and deletes
/// them; returns how many were taken. One caller at a time: another returns -1 at once, so the
/// callbacks of one order key are made in the order their events were recorded. A URL that
/// cannot be filled makes a failed callback saying why.
#[pg_extern(volatile, parallel_unsafe, name = "_expand_events")]
pub fn expand_events(max: i32) -> i32 {
    render_events(max, None).0
}

/// expand_events for a worker, which leases what `lease` allows of the callbacks it renders
/// (src/render/queue.rs); also returns the ids of those leased.
pub fn render_events(max: i32, lease: Option<&Lease<'_>>) -> (i32, Vec<i64>) {
    let (mut taken, mut leased) = (0, Vec::new());
    super::connected("rendering recorded events", |client, plans: &Plans, cache| {
        spi::with_generic_plans(|| {
            let Some(events) = take(client, max)? else {
                taken = -1;
                return Ok(());
            };
            taken = events.len() as i32;
            let mut rendering = Rendering::gathered();
            for (id, at, event) in events {
                rendering.at = at;
                rendering.stored = Some(id);
                super::stored(client, plans, cache, &event, &mut rendering)?;
            }
            leased = super::insert_gathered(client, plans, rendering, lease, taken == max)?;
            Ok(())
        })
    });
    (taken, leased)
}
