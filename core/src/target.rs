//! Targets: where an event is sent and how. Most specific wins (DESIGN.md §4): the message's
//! own webhook, the campaign's alert URL (for campaign.callbacks_disabled), the campaign's URL
//! for the event type, the campaign's callback URL, the list's, the account's delivery-status
//! webhook; every matching subscription also gets its own copy (the extension reads those).
//!
//! In: the settings of the event's campaign, list and account (a row of
//! `callback._target_settings`, sql/events.sql). Out: the one most specific target.

use crate::batch::Batching;
use crate::event::{Scope, CALLBACKS_DISABLED, MESSAGE_STATUS};
use serde_json::{Map, Value};

/// Which setting a callback's target came from (the `kind` column of `callback.callbacks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Message,
    Alert,
    CampaignEvent,
    Campaign,
    List,
    Account,
    Subscription,
}

impl Kind {
    /// The kind named `name` in SQL (`callback.target_kind`).
    pub fn parse(name: &str) -> Option<Kind> {
        [
            Kind::Message,
            Kind::Alert,
            Kind::CampaignEvent,
            Kind::Campaign,
            Kind::List,
            Kind::Account,
            Kind::Subscription,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Alert => "alert",
            Kind::CampaignEvent => "campaign_event",
            Kind::Campaign => "campaign",
            Kind::List => "list",
            Kind::Account => "account",
            Kind::Subscription => "subscription",
        }
    }
}

/// How a target is sent to: its URL template and the settings that go with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub url: String,
    pub method: String,
    pub format: String,
    pub headers: Option<String>,
    pub basic_auth: Option<String>,
    pub bearer_token: Option<String>,
    pub signing_secret: Option<String>,
    pub retry_policy: String,
    /// Whether its events go several to a request, and how.
    pub batch: Option<Batching>,
}

impl Target {
    /// POST with no credentials, retried by the standard policy.
    pub fn plain(url: &str, format: &str) -> Target {
        Target {
            url: url.to_string(),
            method: "POST".into(),
            format: format.to_string(),
            headers: None,
            basic_auth: None,
            bearer_token: None,
            signing_secret: None,
            retry_policy: "standard".into(),
            batch: None,
        }
    }
}

/// What an event's targets are chosen from: a row of `callback._target_settings`.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// None outside campaigns; its URL is empty when it has none.
    pub campaign: Option<Target>,
    pub campaign_events: Vec<String>,
    pub campaign_event_urls: Map<String, Value>,
    pub campaign_alert_url: Option<String>,
    /// None outside campaigns.
    pub campaign_enabled: Option<bool>,
    /// None without a list; its URL is empty when it has none.
    pub list: Option<Target>,
    pub list_events: Vec<String>,
    pub webhook_url: Option<String>,
    /// The delivery-status webhook's batching.
    pub webhook_batch: Option<Batching>,
    /// Whether the account has subscriptions.
    pub subscribed: bool,
    pub campaign_list_id: Option<i64>,
    pub campaign_env: Map<String, Value>,
}

/// The target chosen for an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Chosen {
    pub kind: Kind,
    pub target: Target,
    /// Whether its callback is held: the campaign's callbacks are disabled.
    pub held: bool,
}

impl Sources {
    /// The one most specific target of `event`, if any is set.
    pub fn primary(&self, event: &str, scope: &Scope) -> Option<Chosen> {
        let held = self.campaign_enabled == Some(false) && event != CALLBACKS_DISABLED;
        let chosen = |kind, target, held| Some(Chosen { kind, target, held });
        if let (Some(url), MESSAGE_STATUS) = (scope.notify_url, event) {
            return chosen(
                Kind::Message,
                Target::plain(url, scope.notify_format.unwrap_or("json")),
                false,
            );
        }
        if let Some(campaign) = &self.campaign {
            let to = |url: &str| Target {
                url: url.to_string(),
                ..campaign.clone()
            };
            if let (CALLBACKS_DISABLED, Some(url)) = (event, &self.campaign_alert_url) {
                let alert = Target {
                    retry_policy: "standard".into(),
                    batch: None,
                    ..to(url)
                };
                return chosen(Kind::Alert, alert, false);
            }
            if let Some(Value::String(url)) = self.campaign_event_urls.get(event) {
                return chosen(Kind::CampaignEvent, to(url), held);
            }
            if !campaign.url.is_empty() {
                let sends = self.campaign_events.iter().any(|e| e == event);
                return sends.then(|| Chosen {
                    kind: Kind::Campaign,
                    target: campaign.clone(),
                    held,
                });
            }
        }
        if let Some(list) = &self.list {
            if !list.url.is_empty() && self.list_events.iter().any(|e| e == event) {
                return chosen(Kind::List, list.clone(), held);
            }
        }
        match (event, &self.webhook_url) {
            (MESSAGE_STATUS, Some(url)) => {
                let webhook = Target {
                    batch: self.webhook_batch,
                    ..Target::plain(url, "json")
                };
                chosen(Kind::Account, webhook, false)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(url: &str) -> Target {
        Target {
            method: "GET".into(),
            retry_policy: "strict".into(),
            ..Target::plain(url, "xml")
        }
    }

    fn sources() -> Sources {
        Sources {
            campaign: Some(target("https://campaign/")),
            campaign_events: vec!["message.status".into(), "campaign.complete".into()],
            campaign_event_urls: json!({"message.attempt": "https://attempts/"})
                .as_object()
                .unwrap()
                .clone(),
            campaign_alert_url: Some("https://alerts/".into()),
            campaign_enabled: Some(true),
            list: Some(target("https://list/")),
            list_events: vec!["message.status".into(), "message.sent".into()],
            webhook_url: Some("https://account/".into()),
            ..Sources::default()
        }
    }

    fn scope(notify_url: Option<&str>) -> Scope<'_> {
        Scope {
            account_id: 1,
            campaign_id: Some(2),
            message_id: Some(3),
            channel: Some("sms"),
            notify_url,
            notify_format: None,
        }
    }

    fn chosen(sources: &Sources, event: &str, notify_url: Option<&str>) -> Option<(Kind, String)> {
        let c = sources.primary(event, &scope(notify_url))?;
        Some((c.kind, c.target.url))
    }

    #[test]
    fn the_message_webhook_wins_for_its_status_reports_only() {
        let s = sources();
        let own = s.primary("message.status", &scope(Some("https://own/"))).unwrap();
        assert_eq!((own.kind, own.target.url.as_str()), (Kind::Message, "https://own/"));
        assert_eq!(
            (own.target.method.as_str(), own.target.format.as_str()),
            ("POST", "json")
        );
        assert_eq!(
            chosen(&s, "campaign.complete", Some("https://own/")).unwrap().0,
            Kind::Campaign
        );
    }

    #[test]
    fn an_event_url_beats_the_campaign_url_and_keeps_its_settings() {
        let s = sources();
        let c = s.primary("message.attempt", &scope(None)).unwrap();
        assert_eq!(
            (c.kind, c.target.url.as_str()),
            (Kind::CampaignEvent, "https://attempts/")
        );
        assert_eq!(
            (c.target.method.as_str(), c.target.retry_policy.as_str()),
            ("GET", "strict")
        );
    }

    #[test]
    fn a_campaign_url_stops_the_search_for_events_it_does_not_send() {
        let s = sources();
        assert_eq!(chosen(&s, "message.status", None).unwrap().0, Kind::Campaign);
        assert_eq!(chosen(&s, "message.sent", None), None);
    }

    #[test]
    fn without_a_campaign_url_the_list_then_the_account_webhook() {
        let mut s = sources();
        s.campaign.as_mut().unwrap().url.clear();
        assert_eq!(chosen(&s, "message.sent", None).unwrap().0, Kind::List);
        s.list_events.clear();
        assert_eq!(
            chosen(&s, "message.status", None),
            Some((Kind::Account, "https://account/".into()))
        );
        assert_eq!(chosen(&s, "message.sent", None), None);
    }

    #[test]
    fn the_alert_url_takes_the_alert_with_the_standard_policy_and_is_never_held() {
        let mut s = sources();
        s.campaign_enabled = Some(false);
        let alert = s.primary("campaign.callbacks_disabled", &scope(None)).unwrap();
        assert_eq!((alert.kind, alert.held), (Kind::Alert, false));
        assert_eq!(alert.target.retry_policy, "standard");
        let held = s.primary("message.status", &scope(None)).unwrap();
        assert!(held.held);
    }
}
