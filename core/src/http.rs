//! The HTTP side of delivery: one thread running an event loop (tokio, current-thread) that
//! sends every request of a worker over kept-alive HTTP/1.1 connections (hyper; rustls for
//! https, sessions resumed) and reports what came back. One thread waiting on all sockets at
//! once costs a fraction of a thread per request blocked on its own (BENCHMARKS.md).
//!
//! No pgrx here, and this thread never calls into Postgres: it starts with every signal blocked
//! (threads.rs), as do the threads it starts to look names up, so SIGTERM and SIGHUP reach the
//! worker's main thread; it exchanges only owned data with it over channels.

mod connections;

use crate::destinations::Destinations;
use crate::retry::parse_retry_after;
use crate::threads;
use crate::tls::{self, ClientCert, Trust};
use bytes::Bytes;
use connections::{Connection, Connections, Key};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use ureq::tls::Certificate;

/// One request to make.
#[derive(Debug, Clone)]
pub struct Request {
    /// The caller's key for the answer (the callback id).
    pub key: i64,
    pub post: bool,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// For the whole request: connecting, sending, the answer and its body.
    pub timeout: Duration,
    /// How much of the answer's body to keep.
    pub excerpt_bytes: usize,
    /// The client certificate to present, if the receiver asks for one.
    pub identity: Option<Identity>,
}

/// A client certificate (mutual TLS, tls::client_certificate) and what tells it from the
/// others: its id and version. Requests with the same one share connections.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: i64,
    pub version: u64,
    pub certificate: Arc<ClientCert>,
}

/// What one request came to.
#[derive(Debug, Clone)]
pub struct Response {
    pub key: i64,
    pub started: SystemTime,
    pub duration: Duration,
    /// The HTTP status, when an answer came (any status: redirects are not followed).
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// The first bytes of the answer's body, as text.
    pub excerpt: Option<String>,
    /// Why no answer came (timeout, refused, reset, bad URL ...).
    pub error: Option<String>,
    /// Whether that reason is one no retry can change: a URL that cannot be sent.
    pub hopeless: bool,
}

/// Sizes and limits of a pool, and what it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Requests in flight at once (the caller keeps to it): as many idle connections are kept
    /// per receiver.
    pub in_flight: usize,
    pub trust: Trust,
}

pub struct Pool {
    config: PoolConfig,
    allowed: Arc<RwLock<Destinations>>,
    connections: Arc<Connections>,
    jobs: Option<tokio::sync::mpsc::UnboundedSender<Vec<Request>>>,
    /// Answers come in batches, one wake-up of the caller each (see `serve`).
    results: Receiver<Vec<Response>>,
    /// Answers of the last batch not yet taken.
    ready: RefCell<VecDeque<Response>>,
    _thread: JoinHandle<()>,
}

/// Why a request came to no answer.
enum Failure {
    /// What to record as it is: the guard's refusal, a name that does not resolve.
    Refused(String),
    /// Nothing any retry can change.
    Hopeless(String),
    Io(std::io::Error),
    Hyper(hyper::Error),
    /// Out of time while doing this.
    Timeout(&'static str),
}

impl Pool {
    /// A pool that sends only to the destinations `allowed` (and to public addresses),
    /// trusting the certificates `roots` (tls::roots); an error when its thread cannot be
    /// started.
    pub fn new(config: PoolConfig, roots: &[Certificate<'static>], allowed: Destinations) -> std::io::Result<Pool> {
        let (jobs, job_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<Request>>();
        let (result_tx, results) = channel::<Vec<Response>>();
        let allowed = Arc::new(RwLock::new(allowed));
        let connections = Arc::new(Connections::new(config.in_flight, roots, Arc::clone(&allowed)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .thread_name("pg_callback-http")
            // Names are looked up on threads of their own (the system's resolver blocks): at
            // most one per request in flight, as when each request had its thread.
            .max_blocking_threads(config.in_flight.max(1))
            .build()?;
        let serving = Arc::clone(&connections);
        let thread = threads::spawn("pg_callback-http".into(), move || {
            runtime.block_on(serve(job_rx, result_tx, serving));
        })?;
        Ok(Pool {
            config,
            allowed,
            connections,
            jobs: Some(jobs),
            results,
            ready: RefCell::default(),
            _thread: thread,
        })
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Trusts `roots` (from `trust`) instead, from the next connection on: a changed CA bundle
    /// applies to every callback sent after the reload, while requests on the wire finish.
    pub fn trust(&mut self, trust: Trust, roots: &[Certificate<'static>]) {
        self.connections.retrust(roots);
        self.config.trust = trust;
    }

    /// Changes what may be sent to, from the next request on (over new connections); the
    /// same destinations again (any reload of the settings) keep the connections.
    pub fn allow(&self, allowed: Destinations) {
        let mut current = self.allowed.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != allowed {
            *current = allowed;
            self.connections.forget();
        }
    }

    /// Sends these requests at once (the event loop is woken once for them all).
    pub fn submit(&self, requests: impl IntoIterator<Item = Request>) {
        let requests: Vec<Request> = requests.into_iter().collect();
        if let (false, Some(jobs)) = (requests.is_empty(), &self.jobs) {
            // The thread holds the receiver until the pool is dropped, so this cannot fail.
            let _ = jobs.send(requests);
        }
    }

    /// The next answer, waiting at most `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Response> {
        let mut ready = self.ready.borrow_mut();
        if ready.is_empty() {
            ready.extend(self.results.recv_timeout(timeout).ok()?);
        }
        ready.pop_front()
    }
}

impl Drop for Pool {
    /// Closes the queue: the thread ends, and the requests still on the wire with it. It is
    /// not joined.
    fn drop(&mut self) {
        self.jobs.take();
    }
}

/// Sends each request queued, each in a task of its own, until the queue is closed. Answers
/// go back in batches: those that came in the same turn of the loop are handed over together,
/// so the caller's thread is woken once for them, not once each.
async fn serve(
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<Vec<Request>>,
    results: Sender<Vec<Response>>,
    connections: Arc<Connections>,
) {
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel::<Response>();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while answers.recv_many(&mut batch, 1024).await > 0 {
            if results.send(std::mem::take(&mut batch)).is_err() {
                return;
            }
        }
    });
    while let Some(batch) = jobs.recv().await {
        for job in batch {
            let answered = answered.clone();
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                let _ = answered.send(send(&connections, job).await);
            });
        }
    }
}

/// Sends `request` and reads its answer, all before its timeout; what it came to.
async fn send(connections: &Connections, request: Request) -> Response {
    let started = SystemTime::now();
    let clock = Instant::now();
    let deadline = tokio::time::Instant::now() + request.timeout;
    let mut response = Response {
        key: request.key,
        started,
        duration: Duration::ZERO,
        status: None,
        retry_after: None,
        excerpt: None,
        error: None,
        hopeless: false,
    };
    match exchange(connections, &request, deadline).await {
        Err(failure) => {
            response.hopeless = matches!(failure, Failure::Hopeless(_));
            response.error = Some(describe(failure, request.timeout));
        }
        Ok(Answer {
            response: answer,
            connection,
            key,
        }) => {
            response.status = Some(answer.status().as_u16());
            let now_unix = started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            response.retry_after = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now_unix));
            let (excerpt, read) = read_body(answer.into_body(), request.excerpt_bytes, deadline).await;
            match read {
                Ok(true) => connections.give_back(key, connection),
                Ok(false) => {}
                Err(timeout @ Failure::Timeout(_)) => response.error = Some(describe(timeout, request.timeout)),
                Err(e) => response.error = Some(format!("reading the response: {}", describe(e, request.timeout))),
            }
            response.excerpt = Some(String::from_utf8_lossy(&excerpt).into_owned());
        }
    }
    response.duration = clock.elapsed();
    response
}

/// The first `excerpt_bytes` of an answer's body, the rest read too (up to 1 MiB) so that its
/// connection can carry the next request: whether it was read to its end.
async fn read_body(
    mut body: Incoming,
    excerpt_bytes: usize,
    deadline: tokio::time::Instant,
) -> (Vec<u8>, Result<bool, Failure>) {
    let mut excerpt = Vec::with_capacity(excerpt_bytes.min(4096));
    let mut read = 0;
    let whole = within(deadline, "reading the answer", async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                let room = excerpt_bytes.saturating_sub(excerpt.len());
                excerpt.extend_from_slice(&data[..room.min(data.len())]);
                read += data.len();
                if read > 1 << 20 {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })
    .await
    .and_then(|read| read.map_err(Failure::Hyper));
    (excerpt, whole)
}

/// An answer's head, and the connection it came on.
struct Answer {
    response: hyper::Response<Incoming>,
    connection: Connection,
    key: Key,
}

/// Sends `r` before `deadline` over a kept connection or a new one, up to the answer's head.
/// A kept connection the receiver closed meanwhile is replaced when the request had not gone
/// out on it.
async fn exchange(connections: &Connections, r: &Request, deadline: tokio::time::Instant) -> Result<Answer, Failure> {
    let (key, mut request) = build(r)?;
    let connect = || within(deadline, "connecting", connections.connect(&key, r.identity.as_ref()));
    let mut connection = match connections.take(&key) {
        Some(kept) => kept,
        None => connect().await??,
    };
    loop {
        if connection.reused
            && within(deadline, "connecting", connection.sender.ready())
                .await?
                .is_err()
        {
            connection = connect().await??;
            continue;
        }
        match within(
            deadline,
            "waiting for the answer",
            connection.sender.try_send_request(request),
        )
        .await?
        {
            Ok(response) => {
                return Ok(Answer {
                    response,
                    connection,
                    key,
                })
            }
            Err(mut refused) => match refused.take_message() {
                Some(unsent) if connection.reused => {
                    request = unsent;
                    connection = connect().await??;
                }
                _ => return Err(Failure::Hyper(refused.into_error())),
            },
        }
    }
}

/// `what` done before `deadline`, or a timeout saying what was being done.
async fn within<T>(
    deadline: tokio::time::Instant,
    what: &'static str,
    f: impl Future<Output = T>,
) -> Result<T, Failure> {
    tokio::time::timeout_at(deadline, f)
        .await
        .map_err(|_| Failure::Timeout(what))
}

/// The connection key and the HTTP request for `r`; hopeless when its URL or a header cannot
/// be sent.
fn build(r: &Request) -> Result<(Key, hyper::Request<Full<Bytes>>), Failure> {
    let unsendable = |why: String| Failure::Hopeless(format!("the URL cannot be sent: {why}"));
    let uri: hyper::Uri = r
        .url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| unsendable(e.to_string()))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(unsendable("only http and https URLs are sent".into())),
    };
    let authority = uri.authority().ok_or_else(|| unsendable("no host".into()))?;
    if authority.host().is_empty() {
        return Err(unsendable("no host".into()));
    }
    let key = Key {
        https,
        host: authority.host().to_string(),
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        identity: r.identity.as_ref().map(|i| (i.id, i.version)),
    };
    let host = authority.as_str().rsplit('@').next().unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = hyper::Request::builder()
        .method(if r.post {
            hyper::Method::POST
        } else {
            hyper::Method::GET
        })
        .uri(path)
        .header(hyper::header::HOST, host)
        .header(
            hyper::header::USER_AGENT,
            concat!("pg_callback/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in &r.headers {
        builder = builder.header(name, value);
    }
    let body = Full::new(Bytes::from(r.body.clone().unwrap_or_default()));
    let request = builder
        .body(body)
        .map_err(|e| Failure::Hopeless(format!("the request cannot be sent: {e}")))?;
    Ok((key, request))
}

/// A short, stable description of a failure for the history.
fn describe(failure: Failure, timeout: Duration) -> String {
    match failure {
        Failure::Refused(why) | Failure::Hopeless(why) => why,
        Failure::Timeout(what) => format!("timeout: {what} (the request's timeout is {timeout:?})"),
        Failure::Io(io) => tls::refusal(&io).unwrap_or_else(|| format!("connection error: {io}")),
        Failure::Hyper(e) => {
            if let Some(refused) = tls::refusal(&e) {
                return refused;
            }
            match std::error::Error::source(&e) {
                Some(cause) => format!("connection error: {e}: {cause}"),
                None => format!("connection error: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
