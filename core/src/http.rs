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
    results: Receiver<Response>,
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
        let (result_tx, results) = channel::<Response>();
        let allowed = Arc::new(RwLock::new(allowed));
        let connections = Arc::new(Connections::new(config.in_flight, roots, Arc::clone(&allowed)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .thread_name("pg_callback-http")
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

    /// Changes what may be sent to, from the next request on (over new connections).
    pub fn allow(&self, allowed: Destinations) {
        *self.allowed.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = allowed;
        self.connections.forget();
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
        self.results.recv_timeout(timeout).ok()
    }
}

impl Drop for Pool {
    /// Closes the queue: the thread ends, and the requests still on the wire with it. It is
    /// not joined.
    fn drop(&mut self) {
        self.jobs.take();
    }
}

/// Sends each request queued, each in a task of its own, until the queue is closed.
async fn serve(
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<Vec<Request>>,
    results: Sender<Response>,
    connections: Arc<Connections>,
) {
    while let Some(batch) = jobs.recv().await {
        for job in batch {
            let results = results.clone();
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                let _ = results.send(send(&connections, job).await);
            });
        }
    }
}

async fn send(connections: &Connections, request: Request) -> Response {
    let started = SystemTime::now();
    let clock = Instant::now();
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
    let deadline = tokio::time::Instant::now() + request.timeout;
    let answer = match exchange(connections, &request, deadline).await {
        Ok(answer) => answer,
        Err(failure) => {
            response.hopeless = matches!(failure, Failure::Hopeless(_));
            response.error = Some(describe(failure, request.timeout));
            response.duration = clock.elapsed();
            return response;
        }
    };
    response.status = Some(answer.status().as_u16());
    let now_unix = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    response.retry_after = answer
        .response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now_unix));
    let Answer {
        response: answer,
        connection,
        key,
    } = answer;
    // Read the rest too (up to a bound) so the connection can be kept alive.
    let mut body = answer.into_body();
    let mut excerpt = Vec::with_capacity(request.excerpt_bytes.min(4096));
    let mut read = 0;
    let whole = within(deadline, "reading the answer", async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                let room = request.excerpt_bytes.saturating_sub(excerpt.len());
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
    match whole {
        Ok(true) => connections.give_back(key, connection),
        Ok(false) => {}
        Err(Failure::Timeout(what)) => response.error = Some(describe(Failure::Timeout(what), request.timeout)),
        Err(e) => response.error = Some(format!("reading the response: {}", describe(e, request.timeout))),
    }
    response.excerpt = Some(String::from_utf8_lossy(&excerpt).into_owned());
    response.duration = clock.elapsed();
    response
}

/// An answer's head, and the connection it came on.
struct Answer {
    response: hyper::Response<Incoming>,
    connection: Connection,
    key: Key,
}

impl Answer {
    fn status(&self) -> hyper::StatusCode {
        self.response.status()
    }
}

/// Sends `r` before `deadline` over a kept connection or a new one, up to the answer's head.
/// A kept connection the receiver closed meanwhile is replaced when the request had not gone
/// out on it.
async fn exchange(connections: &Connections, r: &Request, deadline: tokio::time::Instant) -> Result<Answer, Failure> {
    let (key, mut request) = build(r)?;
    let mut connection = match connections.take(&key) {
        Some(kept) => kept,
        None => within(deadline, "connecting", connections.connect(&key, r.identity.as_ref())).await??,
    };
    loop {
        if connection.reused
            && within(deadline, "connecting", connection.sender.ready())
                .await?
                .is_err()
        {
            connection = within(deadline, "connecting", connections.connect(&key, r.identity.as_ref())).await??;
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
                    connection =
                        within(deadline, "connecting", connections.connect(&key, r.identity.as_ref())).await??;
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
mod tests {
    use super::*;
    use crate::threads::blocked_signals;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A one-shot receiver on loopback that answers each connection with `answer`.
    fn receiver(answer: &'static str) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            (&stream).write_all(answer.as_bytes()).unwrap();
            head
        });
        (url, handle)
    }

    /// What the tests send to: loopback, refused unless allowed.
    fn loopback() -> Destinations {
        Destinations::parse("127.0.0.1").unwrap()
    }

    fn request(url: String) -> Request {
        Request {
            key: 7,
            post: true,
            url,
            headers: vec![("X-Test".into(), "yes".into())],
            body: Some("{}".into()),
            timeout: Duration::from_secs(5),
            excerpt_bytes: 4,
            identity: None,
        }
    }

    fn config(in_flight: usize) -> PoolConfig {
        PoolConfig {
            in_flight,
            trust: Trust::default(),
        }
    }

    #[test]
    fn posts_and_reports_status_excerpt_and_retry_after() {
        let (url, server) =
            receiver("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: 11\r\n\r\nslow down!!");
        let pool = Pool::new(config(2), &[], loopback()).unwrap();
        pool.submit([request(url)]);
        let answer = pool.next(Duration::from_secs(5)).expect("an answer");
        assert_eq!(answer.key, 7);
        assert_eq!(answer.status, Some(429));
        assert_eq!(answer.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(answer.excerpt.as_deref(), Some("slow"));
        assert_eq!(answer.error, None);
        let head = server.join().unwrap();
        assert!(head[0].starts_with("POST /hook HTTP/1.1"), "{head:?}");
        assert!(head.iter().any(|h| h.eq_ignore_ascii_case("x-test: yes")), "{head:?}");
    }

    #[test]
    fn redirects_are_answers_not_followed() {
        let (url, _server) =
            receiver("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n");
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        pool.submit([request(url)]);
        assert_eq!(pool.next(Duration::from_secs(5)).unwrap().status, Some(302));
    }

    #[test]
    fn urls_that_cannot_be_sent_are_hopeless() {
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        for url in ["http:///x", "http://exa mple.com/"] {
            pool.submit([request(url.into())]);
            let answer = pool.next(Duration::from_secs(5)).unwrap();
            assert!(answer.hopeless, "{url}: {answer:?}");
            assert!(
                answer
                    .error
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("the URL cannot be sent"),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn the_pool_and_lookup_threads_block_every_signal_and_the_caller_keeps_its_mask() {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::syscall(libc::SYS_gettid) }.to_string();
        let before = blocked_signals(&me).unwrap();
        let pool = Pool::new(config(2), &[], loopback()).unwrap();
        assert_eq!(blocked_signals(&me), Some(before));
        // A name looked up: the event loop's thread starts one to look it up, which stays a
        // while after.
        let (url, server) = receiver("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        pool.submit([request(url.replace("127.0.0.1", "localhost"))]);
        assert_eq!(pool.next(Duration::from_secs(5)).unwrap().status, Some(204));
        server.join().unwrap();
        // A thread names itself once it runs: look until both have.
        let named = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .map(|t| t.unwrap().file_name().into_string().unwrap())
                .filter(|tid| {
                    let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
                    comm.starts_with("pg_callback-htt")
                })
                .collect()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut threads = named();
        while threads.len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            threads = named();
        }
        assert!(threads.len() >= 2, "{threads:?}");
        // Every standard signal (1 to 31) is blocked but SIGKILL and SIGSTOP, which cannot be.
        let standard = (1u64 << 31) - 1;
        let unblockable = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));
        let unblocked = |threads: &[String]| -> Vec<(String, u64)> {
            threads
                .iter()
                .filter_map(|tid| blocked_signals(tid).map(|blocked| (tid.clone(), blocked)))
                .filter(|(_, blocked)| blocked & standard | unblockable != standard)
                .collect()
        };
        // Other tests run at once and start and stop pools of their own, whose threads are read
        // here too: a CI run once saw one with no signal blocked (40 runs here did not), a
        // thread presumably starting or ending. Look again: this pool's threads run until it
        // is dropped, so one of them unblocked is still unblocked then.
        if !unblocked(&threads).is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            threads = named();
        }
        assert_eq!(unblocked(&threads), vec![]);
    }

    /// A receiver on loopback that takes one connection after another and answers 200 to as
    /// many requests on each as `per_connection` says, in turn, then closes it `linger` later
    /// (as a receiver closes a kept connection left idle).
    fn keep_alive_receiver(per_connection: Vec<usize>, linger: Duration) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            for requests in per_connection {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                for _ in 0..requests {
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap();
                        }
                        if line == "\r\n" || line.is_empty() {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                    (&stream)
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .unwrap();
                }
                std::thread::sleep(linger);
            }
        });
        (url, handle)
    }

    #[test]
    fn kept_alive_connections_carry_the_next_requests() {
        let (url, server) = keep_alive_receiver(vec![3], Duration::ZERO);
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        for _ in 0..3 {
            pool.submit([request(url.clone())]);
            let answer = pool.next(Duration::from_secs(5)).unwrap();
            assert_eq!((answer.status, answer.error), (Some(200), None));
        }
        // The receiver took one connection only, and has ended.
        server.join().unwrap();
    }

    #[test]
    fn a_kept_connection_the_receiver_closed_is_replaced_without_an_error() {
        // The receiver closes each connection 20 ms after its answer: the next request, 40 ms
        // later, finds the kept connection closed.
        let (url, server) = keep_alive_receiver(vec![1; 10], Duration::from_millis(20));
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        for round in 0..10 {
            pool.submit([request(url.clone())]);
            let answer = pool.next(Duration::from_secs(5)).unwrap();
            assert_eq!((round, answer.status, answer.error), (round, Some(200), None));
            std::thread::sleep(Duration::from_millis(40));
        }
        server.join().unwrap();
    }

    #[test]
    fn a_timeout_says_what_was_being_waited_for() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        let mut slow = request(url);
        slow.timeout = Duration::from_millis(200);
        pool.submit([slow]);
        // Connected (the kernel accepts it), never answered.
        let answer = pool.next(Duration::from_secs(5)).unwrap();
        assert_eq!(answer.status, None);
        let error = answer.error.clone().unwrap();
        assert!(error.starts_with("timeout: waiting for the answer"), "{error}");
        assert!(
            answer.duration >= Duration::from_millis(200) && !answer.hopeless,
            "{answer:?}"
        );
        drop(listener);
    }

    #[test]
    fn refused_connections_are_errors() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        pool.submit([request(format!("http://127.0.0.1:{port}/"))]);
        let answer = pool.next(Duration::from_secs(5)).unwrap();
        assert_eq!(answer.status, None);
        assert!(answer.error.unwrap().starts_with("connection error"));
    }

    #[test]
    fn names_that_do_not_resolve_are_host_not_found() {
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        // A label one longer than DNS allows: the lookup fails without asking a name server.
        pool.submit([request(format!("http://{}.invalid/", "a".repeat(64)))]);
        let answer = pool.next(Duration::from_secs(10)).unwrap();
        assert_eq!((answer.status, answer.error.as_deref()), (None, Some("host not found")));
    }

    #[test]
    fn protected_destinations_are_refused_before_connecting() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let pool = Pool::new(config(1), &[], Destinations::default()).unwrap();
        for url in [format!("http://127.0.0.1:{port}/"), format!("http://localhost:{port}/")] {
            pool.submit([request(url)]);
            let answer = pool.next(Duration::from_secs(5)).unwrap();
            assert_eq!(answer.status, None);
            let error = answer.error.unwrap();
            assert!(
                error.starts_with("destination refused: ") && error.contains("loopback"),
                "{error}"
            );
        }
        assert!(listener.accept().is_err(), "nothing connected");
        // Allowed by name, its addresses may be connected to; allowed again after a change.
        pool.allow(Destinations::parse("localhost").unwrap());
        let (url, server) = receiver("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        let url = url.replace("127.0.0.1", "localhost");
        pool.submit([request(url)]);
        assert_eq!(pool.next(Duration::from_secs(5)).unwrap().status, Some(204));
        server.join().unwrap();
    }
}
