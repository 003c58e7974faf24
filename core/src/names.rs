//! Name resolution for the HTTP pool: a host's addresses kept for a while, and only those the
//! destination guard allows answered, so the guard checks the addresses actually connected to.

use crate::destinations::Destinations;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a host's addresses are used before it is looked up again.
const NAMES_KEPT_FOR: Duration = Duration::from_secs(30);

/// Name resolution that keeps a host's addresses for NAMES_KEPT_FOR. ureq looks a host up for
/// every request, kept-alive connection or not, on a thread of its own when the request has a
/// timeout: at thousands of requests a second, starting those threads cost more than sending.
/// It answers only the addresses that may be connected to (destinations.rs); ureq
/// connects to no other, for a new connection or a kept-alive one.
#[derive(Debug)]
pub struct KeptNames {
    names: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
    allowed: Arc<RwLock<Destinations>>,
}

impl KeptNames {
    /// Resolves only to the destinations `allowed`.
    pub fn new(allowed: Arc<RwLock<Destinations>>) -> KeptNames {
        KeptNames {
            names: Mutex::default(),
            allowed,
        }
    }
}

impl Resolver for KeptNames {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!("{:?}://{:?}", uri.scheme(), uri.authority());
        let kept = |names: &HashMap<String, (Instant, ResolvedSocketAddrs)>| {
            names
                .get(&key)
                .filter(|(at, _)| at.elapsed() < NAMES_KEPT_FOR)
                .map(|(_, addrs)| addrs.clone())
        };
        if let Some(addrs) = self.names.lock().ok().and_then(|names| kept(&names)) {
            return self.guard(uri, addrs);
        }
        // The standard library's lookup fails with an I/O error ("failed to lookup address
        // information: ..."); the history says what it means.
        let addrs = DefaultResolver::default()
            .resolve(uri, config, timeout)
            .map_err(|e| match e {
                ureq::Error::Io(_) => ureq::Error::HostNotFound,
                other => other,
            })?;
        if let Ok(mut names) = self.names.lock() {
            if names.len() >= 10_000 {
                names.clear();
            }
            names.insert(key, (Instant::now(), addrs.clone()));
        }
        self.guard(uri, addrs)
    }
}

impl KeptNames {
    /// The addresses of `uri`'s host that may be connected to; an error saying why not when
    /// there is none.
    fn guard(&self, uri: &Uri, addrs: ResolvedSocketAddrs) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let allowed = self.allowed.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut kept = self.empty();
        let mut refusal = None;
        for addr in addrs.iter() {
            match allowed.refusal(host, addr.ip()) {
                None => kept.push(*addr),
                Some(why) => refusal = refusal.or(Some(why)),
            }
        }
        match refusal {
            Some(why) if kept.is_empty() => Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                why,
            ))),
            _ => Ok(kept),
        }
    }
}
