//! Name resolution for the HTTP pool: a host's addresses kept for a while, and only those the
//! destination guard allows answered, so the guard checks the addresses actually connected to.

use crate::destinations::Destinations;
use rustc_hash::FxHashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a host's addresses are used before it is looked up again.
const NAMES_KEPT_FOR: Duration = Duration::from_secs(30);

/// A host's addresses and when they were looked up.
type Kept = (Instant, Vec<SocketAddr>);

/// Name resolution that keeps a host's addresses for NAMES_KEPT_FOR: a lookup runs on a
/// thread of the runtime's blocking pool (the system's resolver blocks), which at thousands of
/// requests a second would cost more than sending. It answers only the addresses that may be
/// connected to (destinations.rs); the pool connects to no other.
#[derive(Debug)]
pub struct KeptNames {
    names: Mutex<FxHashMap<(String, u16), Kept>>,
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

    /// The addresses of `host` (a name, or an address in URL form) that may be connected to;
    /// the error to record when there is none: "host not found", or the guard's refusal.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return self.guard(host, vec![SocketAddr::new(ip, port)]);
        }
        let key = (host.to_string(), port);
        let kept = self.names.lock().ok().and_then(|names| {
            names
                .get(&key)
                .filter(|(at, _)| at.elapsed() < NAMES_KEPT_FOR)
                .map(|(_, addrs)| addrs.clone())
        });
        let addrs = match kept {
            Some(addrs) => addrs,
            None => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|_| "host not found".to_string())?
                    .collect();
                if let Ok(mut names) = self.names.lock() {
                    if names.len() >= 10_000 {
                        names.clear();
                    }
                    names.insert(key, (Instant::now(), addrs.clone()));
                }
                addrs
            }
        };
        if addrs.is_empty() {
            return Err("host not found".to_string());
        }
        self.guard(host, addrs)
    }

    /// The addresses of `host` that may be connected to; the refusal when there is none.
    fn guard(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, String> {
        let allowed = self.allowed.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut refusal = None;
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|addr| match allowed.refusal(host, addr.ip()) {
                None => true,
                Some(why) => {
                    refusal.get_or_insert(why);
                    false
                }
            })
            .collect();
        match refusal {
            Some(why) if kept.is_empty() => Err(why),
            _ => Ok(kept),
        }
    }
}
