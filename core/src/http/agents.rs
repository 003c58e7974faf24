//! The ureq agents a pool's threads share: one per timeout and client certificate, each with
//! the roots trusted, the destination guard and the pool's connection limits.

use super::Identity;
use crate::destinations::Destinations;
use crate::names::KeptNames;
use crate::tls::Roots;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, RootCerts, TlsConfig};
use ureq::unversioned::transport::DefaultConnector;

/// The agents the threads share, one per timeout and client certificate. A timeout set on
/// each request instead would make every request's configuration its own, and ureq then
/// builds a new TLS configuration (the roots parsed again, no session to resume) for each new
/// connection; an agent's own is built once and keeps the sessions it can resume.
pub(super) struct Agents {
    threads: usize,
    roots: RwLock<Roots>,
    allowed: Arc<RwLock<Destinations>>,
    by_kind: RwLock<HashMap<AgentKey, ureq::Agent>>,
}

/// What requests sharing an agent have in common: the timeout, the client certificate's id
/// and version.
type AgentKey = (Duration, Option<(i64, u64)>);

impl Agents {
    /// Agents for a pool of `threads`, trusting `roots`, sending only where `allowed` says.
    pub(super) fn new(threads: usize, roots: &[Certificate<'static>], allowed: Arc<RwLock<Destinations>>) -> Agents {
        Agents {
            threads,
            roots: RwLock::new(roots.to_vec()),
            allowed,
            by_kind: RwLock::default(),
        }
    }

    /// The agent for requests with this timeout and client certificate, made on first use;
    /// making one for a new version of a certificate drops those for its older versions.
    pub(super) fn get(&self, timeout: Duration, identity: Option<&Identity>) -> ureq::Agent {
        let key = (timeout, identity.map(|i| (i.id, i.version)));
        if let Some(agent) = self.by_kind.read().ok().and_then(|agents| agents.get(&key).cloned()) {
            return agent;
        }
        let certificate = identity.map(|i| i.certificate.clone());
        let roots = self
            .roots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let made = agent(self.threads, &roots, certificate, timeout, Arc::clone(&self.allowed));
        match self.by_kind.write() {
            Ok(mut agents) => {
                if let Some((id, version)) = key.1 {
                    agents.retain(|(_, other), _| !matches!(other, Some((i, v)) if *i == id && *v != version));
                }
                agents.entry(key).or_insert(made).clone()
            }
            Err(_) => made,
        }
    }

    /// Trusts `roots` from the next request on: the agents trusting the old ones are dropped
    /// (requests on the wire keep theirs until they end).
    pub(super) fn retrust(&self, roots: &[Certificate<'static>]) {
        let mut agents = self.by_kind.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *self.roots.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = roots.to_vec();
        agents.clear();
    }
}

/// An agent: kept-alive connections (and TLS sessions, resumed by the one rustls
/// configuration it keeps), no redirects, every status an answer, no proxy (the guard checks
/// the addresses connected to), only the destinations allowed, only the `roots` trusted,
/// `certificate` presented when asked for, `timeout` for a whole request.
fn agent(
    threads: usize,
    roots: &[Certificate<'static>],
    certificate: Option<ClientCert>,
    timeout: Duration,
    allowed: Arc<RwLock<Destinations>>,
) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(roots))
        .client_cert(certificate)
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .max_idle_connections(threads.max(1) * 4)
        .max_idle_connections_per_host(threads.max(1))
        .user_agent(concat!("pg_callback/", env!("CARGO_PKG_VERSION")))
        .build();
    let names = KeptNames::new(allowed);
    ureq::Agent::with_parts(config, DefaultConnector::default(), names)
}
