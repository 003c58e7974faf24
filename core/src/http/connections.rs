//! The connections a pool keeps: kept-alive HTTP/1.1 connections (hyper) per receiver and
//! client certificate, made to the addresses the destination guard allows (names.rs) and, for
//! https, with rustls trusting the pool's roots and presenting the client certificate asked
//! for. TLS sessions are resumed: one rustls configuration per client certificate keeps them.

use super::{Failure, Identity};
use crate::destinations::Destinations;
use crate::names::KeptNames;
use crate::tls::ClientCert;
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustc_hash::FxHashMap;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::net::TcpStream;
use ureq::tls::Certificate;

/// A connection's sending half; its other half runs as a task of its own.
pub(super) type Sender = SendRequest<Full<Bytes>>;

/// Where a connection goes and what it presents: requests with the same key share connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// The client certificate's id and version.
    pub identity: Option<(i64, u64)>,
}

/// A connection from the pool, with the generation it was made in.
pub(super) struct Connection {
    pub sender: Sender,
    generation: u64,
    /// Whether it carried a request before (the receiver may have closed it since).
    pub reused: bool,
}

pub(super) struct Connections {
    /// Idle connections kept per key.
    per_key: usize,
    names: KeptNames,
    state: Mutex<State>,
}

struct State {
    /// Raised when the roots trusted or the destinations allowed change: connections made
    /// before are not used again.
    generation: u64,
    roots: Arc<RootCertStore>,
    tls: FxHashMap<Option<(i64, u64)>, Arc<ClientConfig>>,
    idle: FxHashMap<Key, Vec<Connection>>,
}

impl Connections {
    /// Keeping at most `per_key` idle connections to a receiver, trusting `roots`, connecting
    /// only where `allowed` says.
    pub(super) fn new(per_key: usize, roots: &[Certificate<'static>], allowed: Arc<RwLock<Destinations>>) -> Self {
        Connections {
            per_key: per_key.max(1),
            names: KeptNames::new(allowed),
            state: Mutex::new(State {
                generation: 0,
                roots: Arc::new(root_store(roots)),
                tls: FxHashMap::default(),
                idle: FxHashMap::default(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Trusts `roots` from the next connection on; connections made before are closed when
    /// the requests on them end.
    pub(super) fn retrust(&self, roots: &[Certificate<'static>]) {
        let mut state = self.state();
        state.roots = Arc::new(root_store(roots));
        state.tls.clear();
        Self::forget_in(&mut state);
    }

    /// Makes new connections from now on (the destinations allowed changed).
    pub(super) fn forget(&self) {
        Self::forget_in(&mut self.state());
    }

    fn forget_in(state: &mut State) {
        state.generation += 1;
        state.idle.clear();
    }

    /// An idle connection for `key`, if one is kept and still open.
    pub(super) fn take(&self, key: &Key) -> Option<Connection> {
        let mut state = self.state();
        let idle = state.idle.get_mut(key)?;
        while let Some(connection) = idle.pop() {
            if !connection.sender.is_closed() {
                return Some(connection);
            }
        }
        None
    }

    /// Keeps `connection` for the next request to `key`, unless it is closed, made before a
    /// change, or enough are kept.
    pub(super) fn give_back(&self, key: Key, mut connection: Connection) {
        let mut state = self.state();
        if connection.generation != state.generation || connection.sender.is_closed() {
            return;
        }
        let per_key = self.per_key;
        let idle = state.idle.entry(key).or_default();
        if idle.len() < per_key {
            connection.reused = true;
            idle.push(connection);
        }
    }

    /// A new connection for `key`: its host resolved and guarded, connected, TLS when https.
    pub(super) async fn connect(&self, key: &Key, identity: Option<&Identity>) -> Result<Connection, Failure> {
        let addrs = self
            .names
            .resolve(&key.host, key.port)
            .await
            .map_err(Failure::Refused)?;
        let (generation, tls) = {
            let mut state = self.state();
            let tls = key.https.then(|| tls_config(&mut state, identity)).transpose()?;
            (state.generation, tls)
        };
        let stream = connect_first(addrs).await.map_err(Failure::Io)?;
        stream.set_nodelay(true).map_err(Failure::Io)?;
        let sender = match tls {
            None => handshake(stream).await?,
            Some(config) => {
                let bare = key.host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(bare.to_string())
                    .map_err(|e| Failure::Hopeless(format!("the URL cannot be sent: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .map_err(Failure::Io)?;
                handshake(stream).await?
            }
        };
        Ok(Connection {
            sender,
            generation,
            reused: false,
        })
    }
}

/// A TCP connection to the first of `addrs` that takes one; the last refusal when none does.
async fn connect_first(addrs: Vec<SocketAddr>) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::from(std::io::ErrorKind::NotFound);
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// HTTP/1.1 over `io`, its connection driven by a task of its own until it closes.
async fn handshake<T>(io: T) -> Result<Sender, Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await.map_err(Failure::Hyper)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The TLS configuration for connections presenting `identity` (made on first use; making one
/// for a new version of a certificate drops those for its older versions).
fn tls_config(state: &mut State, identity: Option<&Identity>) -> Result<Arc<ClientConfig>, Failure> {
    let key = identity.map(|i| (i.id, i.version));
    if let Some(config) = state.tls.get(&key) {
        return Ok(Arc::clone(config));
    }
    let config = Arc::new(client_config(&state.roots, identity.map(|i| &*i.certificate))?);
    if let Some((id, version)) = key {
        state
            .tls
            .retain(|other, _| !matches!(other, Some((i, v)) if *i == id && *v != version));
    }
    state.tls.insert(key, Arc::clone(&config));
    Ok(config)
}

/// rustls (ring) with safe protocol versions, `roots` trusted, `certificate` presented when
/// the receiver asks for one.
fn client_config(roots: &Arc<RootCertStore>, certificate: Option<&ClientCert>) -> Result<ClientConfig, Failure> {
    let unusable = |e: rustls::Error| Failure::Refused(format!("TLS: the client configuration cannot be used: {e}"));
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_root_certificates(Arc::clone(roots));
    match certificate {
        None => Ok(builder.with_no_client_auth()),
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .map_err(unusable),
    }
}

/// The roots as rustls keeps them (a certificate it cannot parse is left out).
fn root_store(roots: &[Certificate<'static>]) -> RootCertStore {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(roots.iter().map(|c| CertificateDer::from(c.der().to_vec())));
    store
}
