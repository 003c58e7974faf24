//! Alert emails (seed 001: "any person on the communication notification list will receive an
//! email"): what an alert's email says, and the thread that sends it through an SMTP relay
//! (lettre), so that a slow relay never holds up delivery.
//!
//! In: the relay's settings, the facts of an alert, an address. Out: for each email, whether it
//! went, or why not and whether trying again could change that. Like the HTTP pool's, the
//! thread never calls into Postgres and blocks every signal.

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain, then STARTTLS, required.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No TLS at all: for a relay on loopback or a trusted network only.
    Off,
}

/// The relay emails go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// User name and password, when the relay wants a login.
    pub login: Option<(String, String)>,
    pub from: String,
    pub timeout: Duration,
}

/// What an alert's email tells: the campaign whose callbacks were disabled, the callback that
/// failed, and how to turn them on again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFacts {
    pub alert_id: i64,
    pub account_id: i64,
    pub campaign_id: i64,
    pub campaign_name: String,
    pub raised_at: String,
    pub callback_id: Option<i64>,
    pub event: Option<String>,
    pub url: Option<String>,
    pub attempts: Option<i32>,
    pub last_http_status: Option<i32>,
    pub last_error: Option<String>,
}

/// The subject and plain-text body of an alert's email.
pub fn compose(a: &AlertFacts) -> (String, String) {
    let subject = format!(
        "pg_callback: callbacks of campaign {} \"{}\" disabled",
        a.campaign_id, a.campaign_name
    );
    let or_unknown = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
    let body = format!(
        "The callbacks of campaign {id} \"{name}\" (account {account}) were disabled at {at}: \
         a callback failed every attempt its retry policy allows.\n\n\
         Callback:         {callback}\n\
         Event:            {event}\n\
         URL:              {url}\n\
         Attempts:         {attempts}\n\
         Last HTTP status: {status}\n\
         Last error:       {error}\n\n\
         Its callbacks are held, not lost. Once the receiver is fixed, send them with:\n\n    \
         SELECT callback.enable_campaign_callbacks({id});\n\n\
         and the failed one again with:\n\n    SELECT callback.replay({callback});\n\n\
         (alert {alert})\n",
        id = a.campaign_id,
        name = a.campaign_name,
        account = a.account_id,
        at = a.raised_at,
        callback = or_unknown(a.callback_id.map(|i| i.to_string())),
        event = or_unknown(a.event.clone()),
        url = or_unknown(a.url.clone()),
        attempts = or_unknown(a.attempts.map(|n| n.to_string())),
        status = a
            .last_http_status
            .map_or("none (no answer)".to_string(), |s| s.to_string()),
        error = a.last_error.clone().unwrap_or_else(|| "none".into()),
        alert = a.alert_id,
    );
    (subject, body)
}

/// Whether `address` is an email address a message can be sent to.
pub fn check_address(address: &str) -> Result<(), String> {
    address
        .parse::<Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("\"{address}\" is not an email address: {e}"))
}

/// One email to send.
#[derive(Debug, Clone)]
pub struct Email {
    /// The caller's key for the outcome.
    pub key: i64,
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// How sending one went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub key: i64,
    /// Why it was not sent; None: the relay took it.
    pub error: Option<String>,
    /// Whether the relay refused it for good (a 5xx): trying again would not help.
    pub permanent: bool,
}

/// A thread sending emails through one relay, one at a time.
pub struct Mailer {
    relay: Relay,
    jobs: Option<Sender<Email>>,
    outcomes: Receiver<Outcome>,
    thread: Option<JoinHandle<()>>,
}

impl Mailer {
    /// A mailer for `relay` trusting `roots` (DER certificates: tls::roots) for its TLS; an
    /// error saying why when the relay's settings cannot work or the thread cannot start.
    pub fn new(relay: Relay, roots: &[Vec<u8>]) -> Result<Mailer, String> {
        let from = relay
            .from
            .parse::<Mailbox>()
            .map_err(|e| format!("pg_callback.smtp_from \"{}\" is not an email address: {e}", relay.from))?;
        let transport = transport(&relay, roots)?;
        let (jobs, job_rx) = channel::<Email>();
        let (outcome_tx, outcomes) = channel::<Outcome>();
        let thread = crate::threads::spawn("pg_callback-mail".into(), move || {
            for email in job_rx {
                let outcome = send(&transport, &from, email);
                if outcome_tx.send(outcome).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("cannot start the mail thread: {e}"))?;
        Ok(Mailer {
            relay,
            jobs: Some(jobs),
            outcomes,
            thread: Some(thread),
        })
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    pub fn submit(&self, email: Email) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(email);
        }
    }

    /// The next outcome, if one is in.
    pub fn next(&self) -> Option<Outcome> {
        self.outcomes.try_recv().ok()
    }
}

impl Drop for Mailer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn transport(relay: &Relay, roots: &[Vec<u8>]) -> Result<SmtpTransport, String> {
    let tls = || -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(relay.host.clone()).certificate_store(CertificateStore::None);
        for der in roots {
            if let Ok(certificate) = Certificate::from_der(der.clone()) {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder
            .build_rustls()
            .map_err(|e| format!("TLS for the SMTP relay: {e}"))
    };
    let tls = match relay.security {
        Security::StartTls => Tls::Required(tls()?),
        Security::Implicit => Tls::Wrapper(tls()?),
        Security::Off => Tls::None,
    };
    let mut builder = SmtpTransport::builder_dangerous(relay.host.as_str())
        .port(relay.port)
        .tls(tls)
        .timeout(Some(relay.timeout));
    if let Some((user, password)) = &relay.login {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

fn send(transport: &SmtpTransport, from: &Mailbox, email: Email) -> Outcome {
    let refused = |error: String, permanent| Outcome {
        key: email.key,
        error: Some(error),
        permanent,
    };
    let to = match email.to.parse::<Mailbox>() {
        Ok(to) => to,
        Err(e) => return refused(format!("\"{}\" is not an email address: {e}", email.to), true),
    };
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(email.subject.clone())
        .body(email.body.clone());
    let message = match message {
        Ok(message) => message,
        Err(e) => return refused(format!("the email cannot be made: {e}"), true),
    };
    match transport.send(&message) {
        Ok(_) => Outcome {
            key: email.key,
            error: None,
            permanent: false,
        },
        Err(e) => refused(format!("SMTP: {e}"), e.is_permanent()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_email_says_what_failed_and_how_to_enable_it_again() {
        let (subject, body) = compose(&AlertFacts {
            alert_id: 3,
            account_id: 1,
            campaign_id: 7,
            campaign_name: "spring".into(),
            raised_at: "2026-12-04T05:00:00.000000Z".into(),
            callback_id: Some(42),
            event: Some("message.status".into()),
            url: Some("https://crm.example.com/dlr".into()),
            attempts: Some(3),
            last_http_status: Some(500),
            last_error: Some("HTTP 500 is not a success".into()),
        });
        assert_eq!(subject, "pg_callback: callbacks of campaign 7 \"spring\" disabled");
        for said in [
            "Callback:         42",
            "URL:              https://crm.example.com/dlr",
            "Attempts:         3",
            "Last HTTP status: 500",
            "Last error:       HTTP 500 is not a success",
            "SELECT callback.enable_campaign_callbacks(7);",
        ] {
            assert!(body.contains(said), "{said} not in {body}");
        }
        let (_, unanswered) = compose(&AlertFacts::default());
        assert!(unanswered.contains("Last HTTP status: none (no answer)"));
    }

    #[test]
    fn addresses_are_checked() {
        assert!(check_address("ops@acme.example").is_ok());
        assert!(check_address("Ops Team <ops@acme.example>").is_ok());
        assert!(check_address("not an address").is_err());
    }

    #[test]
    fn a_bad_from_address_is_said_before_anything_is_sent() {
        let relay = Relay {
            host: "127.0.0.1".into(),
            port: 25,
            security: Security::Off,
            login: None,
            from: "nobody".into(),
            timeout: Duration::from_secs(1),
        };
        let error = Mailer::new(relay, &[]).err().unwrap();
        assert!(
            error.starts_with("pg_callback.smtp_from \"nobody\" is not an email address"),
            "{error}"
        );
    }

    #[test]
    fn a_relay_that_refuses_connections_is_a_temporary_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let relay = Relay {
            host: "127.0.0.1".into(),
            port,
            security: Security::Off,
            login: None,
            from: "pg_callback@acme.example".into(),
            timeout: Duration::from_secs(2),
        };
        let mailer = Mailer::new(relay, &[]).unwrap();
        mailer.submit(Email {
            key: 9,
            to: "ops@acme.example".into(),
            subject: "s".into(),
            body: "b".into(),
        });
        let outcome = mailer.outcomes.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((outcome.key, outcome.permanent), (9, false));
        assert!(outcome.error.unwrap().starts_with("SMTP: "));
    }
}
