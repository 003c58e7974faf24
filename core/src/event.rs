//! Events: what happened to a message or a campaign, as recording stores it and rendering
//! reads it back; and what a status change means, from the statuses a user defined.
//!
//! In: a message's row as its status changed, or another event's variables and data (made by
//! its PL/pgSQL trigger). Out: the event types a change makes, and each event's template
//! variables and data (the README documents the data's fields).

use crate::time::iso_of_postgres;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// A message whose status changed, as recording reads it: a row of `callback.messages`, or of
/// an application's own table attached with `callback.attach()`. Times are Postgres
/// `timestamptz` values (microseconds since 2000-01-01).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub id: i64,
    pub account_id: i64,
    pub campaign_id: Option<i64>,
    /// The list of a message outside campaigns, when its table names one (attached tables);
    /// otherwise its member's, looked up when it is rendered.
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
    pub created_at: Option<i64>,
    pub status_at: Option<i64>,
    /// Whether every status is reported, not only final ones.
    pub intermediate: bool,
    /// Whether its attempts are in `callback.attempts` (not for attached tables).
    pub has_attempts: bool,
    /// Its attempts' ids, in order, when they were read with the event (a worker taking
    /// stored events); None: read when message.final needs them.
    pub attempt_ids: Option<Vec<i64>>,
}

/// Any event but a message's status change (attempts, campaigns, alerts), with the template
/// variables and data its PL/pgSQL trigger made.
#[derive(Clone, Debug, PartialEq)]
pub struct Other {
    pub event: String,
    pub account_id: i64,
    pub campaign_id: Option<i64>,
    pub message_id: Option<i64>,
    /// The list of a message outside campaigns (its member's).
    pub list_id: Option<i64>,
    pub channel: Option<String>,
    pub notify_url: Option<String>,
    pub notify_format: Option<String>,
    pub vars: Value,
    pub data: Value,
}

/// An event as stored: a message's status change, or any other.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Status(Message),
    Other(Other),
}

/// Where an event happened: what its targets are chosen by.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub account_id: i64,
    pub campaign_id: Option<i64>,
    pub message_id: Option<i64>,
    pub channel: Option<&'a str>,
    pub notify_url: Option<&'a str>,
    pub notify_format: Option<&'a str>,
}

/// A row of `callback.statuses`: whether the status is final, and the event it fires.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    pub is_final: bool,
    pub fires: Option<String>,
}

/// Every status a message may take, by name.
pub type Statuses = HashMap<String, Status>;

/// What a change of a message's status means.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    /// Whether the new status is final.
    pub is_final: bool,
    /// The event the new status fires (message.sent, message.problem).
    pub fires: Option<String>,
    /// Whether the previous status was final.
    pub was_final: bool,
}

impl StatusChange {
    /// The change from `previous` (None: a new message) to `status`; a status not in
    /// `statuses` is neither final nor fires anything.
    pub fn of(statuses: &Statuses, status: &str, previous: Option<&str>) -> StatusChange {
        let Status { is_final, fires } = statuses.get(status).cloned().unwrap_or_default();
        let was_final = previous.and_then(|p| statuses.get(p)).is_some_and(|s| s.is_final);
        StatusChange {
            is_final,
            fires,
            was_final,
        }
    }

    /// The events it makes, in order: message.status (final statuses, or every status with
    /// `intermediate` reports), the event the status fires, and message.final when the
    /// message first becomes final.
    pub fn events(&self, intermediate: bool) -> Vec<&str> {
        let mut events = Vec::new();
        if self.is_final || intermediate {
            events.push(MESSAGE_STATUS);
        }
        if let Some(fires) = &self.fires {
            events.push(fires.as_str());
        }
        if self.is_final && !self.was_final {
            events.push(MESSAGE_FINAL);
        }
        events
    }

    /// Whether it makes any event.
    pub fn records_any(&self, intermediate: bool) -> bool {
        self.is_final || intermediate || self.fires.is_some()
    }
}

pub const MESSAGE_STATUS: &str = "message.status";
pub const MESSAGE_FINAL: &str = "message.final";
pub const CALLBACKS_DISABLED: &str = "campaign.callbacks_disabled";

impl Message {
    /// Where its events happened.
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            account_id: self.account_id,
            campaign_id: self.campaign_id,
            message_id: Some(self.id),
            channel: self.channel.as_deref(),
            notify_url: self.notify_url.as_deref(),
            notify_format: self.notify_format.as_deref(),
        }
    }

    /// Its events' template variables: its member's `attributes`, then the campaign's `env`,
    /// then the built-ins (a later source wins a name both have; a built-in that is NULL is
    /// left out). `list_id` is its campaign's list, else its own or its member's.
    pub fn vars(
        &self,
        attributes: Map<String, Value>,
        env: &Map<String, Value>,
        list_id: Option<i64>,
    ) -> Map<String, Value> {
        let mut vars = attributes;
        vars.extend(env.clone());
        let builtins = [
            ("id", json!(self.id)),
            ("messageId", json!(self.id)),
            ("memberId", json!(self.member_id)),
            ("campaignId", json!(self.campaign_id)),
            ("communicationId", json!(self.campaign_id)),
            ("listId", json!(list_id)),
            ("accountId", json!(self.account_id)),
            ("batchId", json!(self.batch_id)),
            ("status", json!(self.status)),
            ("channel", json!(self.channel)),
            ("destination", json!(self.destination)),
        ];
        vars.extend(
            builtins
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.to_string(), v)),
        );
        vars
    }

    /// Its events' data (README, "Events"); `campaign_list_id` is its campaign's list.
    pub fn data(&self, campaign_list_id: Option<i64>, is_final: bool) -> Value {
        let error = (self.error_code.is_some() || self.error_message.is_some())
            .then(|| json!({"code": self.error_code, "message": self.error_message}));
        json!({
            "message_id": self.id,
            "account_id": self.account_id,
            "campaign_id": self.campaign_id,
            "list_id": campaign_list_id,
            "member_id": self.member_id,
            "batch_id": self.batch_id,
            "channel": self.channel,
            "destination": self.destination,
            "status": self.status,
            "previous_status": self.previous,
            "final": is_final,
            "error": error,
            "callback_data": self.callback_data,
            "created_at": self.created_at.map(iso_of_postgres),
            "status_at": self.status_at.map(iso_of_postgres),
        })
    }
}

impl Other {
    /// Where it happened.
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            account_id: self.account_id,
            campaign_id: self.campaign_id,
            message_id: self.message_id,
            channel: self.channel.as_deref(),
            notify_url: self.notify_url.as_deref(),
            notify_format: self.notify_format.as_deref(),
        }
    }
}

/// A JSON object given as text (member attributes, campaign env); empty when NULL or not an
/// object.
pub fn json_object(text: Option<&str>) -> Map<String, Value> {
    match text.map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses() -> Statuses {
        let status = |is_final: bool, fires: Option<&str>| Status {
            is_final,
            fires: fires.map(str::to_string),
        };
        HashMap::from([
            ("accepted".to_string(), status(false, None)),
            ("sent".to_string(), status(false, Some("message.sent"))),
            ("delivered".to_string(), status(true, None)),
            ("failed".to_string(), status(true, Some("message.problem"))),
        ])
    }

    #[test]
    fn a_first_final_status_reports_the_status_and_the_final_event() {
        let change = StatusChange::of(&statuses(), "delivered", Some("sent"));
        assert_eq!(change.events(false), ["message.status", "message.final"]);
        let again = StatusChange::of(&statuses(), "failed", Some("delivered"));
        assert_eq!(again.events(false), ["message.status", "message.problem"]);
    }

    #[test]
    fn intermediate_statuses_are_reported_only_when_asked_for() {
        let change = StatusChange::of(&statuses(), "accepted", None);
        assert!(change.events(false).is_empty());
        assert!(!change.records_any(false));
        assert_eq!(change.events(true), ["message.status"]);
        let fires = StatusChange::of(&statuses(), "sent", Some("accepted"));
        assert_eq!(fires.events(false), ["message.sent"]);
        assert!(fires.records_any(false));
    }

    #[test]
    fn unknown_statuses_mean_nothing() {
        let change = StatusChange::of(&statuses(), "nonsense", Some("also nonsense"));
        assert!(!change.records_any(false));
    }

    #[test]
    fn built_in_variables_win_over_attributes_and_env_and_nulls_are_left_out() {
        let message = Message {
            id: 7,
            account_id: 1,
            campaign_id: Some(3),
            status: "delivered".into(),
            ..Message::default()
        };
        let attributes = json_object(Some(r#"{"name": "Ann", "status": "x"}"#));
        let env = json_object(Some(r#"{"name": "env wins", "region": "eu"}"#));
        let vars = message.vars(attributes, &env, Some(9));
        assert_eq!(vars["name"], "env wins");
        assert_eq!(vars["region"], "eu");
        assert_eq!(vars["status"], "delivered");
        assert_eq!(vars["listId"], 9);
        assert_eq!(vars["communicationId"], 3);
        assert!(!vars.contains_key("memberId"));
        assert!(!vars.contains_key("batchId"));
    }

    #[test]
    fn data_carries_the_error_only_when_there_is_one() {
        let mut message = Message {
            id: 7,
            status: "failed".into(),
            created_at: Some(0),
            ..Message::default()
        };
        let data = message.data(None, true);
        assert_eq!(data["error"], Value::Null);
        assert_eq!(data["created_at"], "2000-01-01T00:00:00.000000Z");
        assert_eq!(data["final"], true);
        message.error_code = Some("E1".into());
        assert_eq!(
            message.data(None, true)["error"],
            json!({"code": "E1", "message": null})
        );
    }

    #[test]
    fn json_objects_from_text() {
        assert!(json_object(None).is_empty());
        assert!(json_object(Some("[1]")).is_empty());
        assert_eq!(json_object(Some(r#"{"a": 1}"#))["a"], 1);
    }
}
