//! The HTTP side of delivery: a pool of threads sharing ureq agents (kept-alive connections,
//! resumed TLS sessions), each sending one request at a time and reporting what came back.
//!
//! No pgrx here, and these threads never call into Postgres: they start with every signal
//! blocked (threads.rs), so SIGTERM and SIGHUP reach the worker's main thread, and they
//! exchange only owned data with it over channels.

mod agents;

use crate::destinations::Destinations;
use crate::retry::parse_retry_after;
use crate::threads;
use crate::tls::{self, Trust};
use agents::Agents;
use std::io::Read;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use ureq::tls::{Certificate, ClientCert};

/// One request to make.
#[derive(Debug, Clone)]
pub struct Request {
    /// The caller's key for the answer (the callback id).
    pub key: i64,
    pub post: bool,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout: Duration,
    /// How much of the answer's body to keep.
    pub excerpt_bytes: usize,
    /// The client certificate to present, if the receiver asks for one.
    pub identity: Option<Identity>,
}

/// A client certificate (mutual TLS, tls::client_certificate) and what tells it from the
/// others: its id and version. Requests with the same one share an agent.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: i64,
    pub version: u64,
    pub certificate: ClientCert,
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
    /// Requests in flight at once: one thread each.
    pub threads: usize,
    pub trust: Trust,
}

pub struct Pool {
    config: PoolConfig,
    allowed: Arc<RwLock<Destinations>>,
    agents: Arc<Agents>,
    jobs: Option<Sender<Request>>,
    results: Receiver<Response>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool that sends only to the destinations `allowed` (and to public addresses),
    /// trusting the certificates `roots` (tls::roots); an error when a thread cannot be started.
    pub fn new(config: PoolConfig, roots: &[Certificate<'static>], allowed: Destinations) -> std::io::Result<Pool> {
        let (jobs, job_rx) = channel::<Request>();
        let (result_tx, results) = channel::<Response>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let allowed = Arc::new(RwLock::new(allowed));
        let agents = Arc::new(Agents::new(config.threads, roots, Arc::clone(&allowed)));
        let threads = (0..config.threads.max(1))
            .map(|i| {
                let job_rx = Arc::clone(&job_rx);
                let result_tx = result_tx.clone();
                let agents = Arc::clone(&agents);
                threads::spawn(format!("pg_callback-http-{i}"), move || loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let agent = agents.get(job.timeout, job.identity.as_ref());
                    if result_tx.send(send(&agent, job)).is_err() {
                        return;
                    }
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Pool {
            config,
            allowed,
            agents,
            jobs: Some(jobs),
            results,
            threads,
        })
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Trusts `roots` (from `trust`) instead, from the next request on: a changed CA bundle
    /// applies to every callback sent after the reload, while requests on the wire finish.
    pub fn trust(&mut self, trust: Trust, roots: &[Certificate<'static>]) {
        self.agents.retrust(roots);
        self.config.trust = trust;
    }

    /// Changes what may be sent to, from the next request on.
    pub fn allow(&self, allowed: Destinations) {
        *self.allowed.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = allowed;
    }

    /// Queues a request; a thread takes it as soon as one is free.
    pub fn submit(&self, request: Request) {
        if let Some(jobs) = &self.jobs {
            // The threads hold the receiver until the pool is dropped, so this cannot fail.
            let _ = jobs.send(request);
        }
    }

    /// The next answer, waiting at most `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Response> {
        self.results.recv_timeout(timeout).ok()
    }
}

impl Drop for Pool {
    /// Closes the queue; threads finish the request they are on and end. They are not
    /// joined: a request may run until its timeout, and the worker need not wait for it.
    fn drop(&mut self) {
        self.jobs.take();
        self.threads.clear();
    }
}

fn send(agent: &ureq::Agent, request: Request) -> Response {
    let excerpt_bytes = request.excerpt_bytes;
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
    match call(agent, &request) {
        Ok(mut answer) => {
            response.status = Some(answer.status().as_u16());
            let now_unix = started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            response.retry_after = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now_unix));
            let mut excerpt = Vec::with_capacity(excerpt_bytes.min(4096));
            // Read the rest too (up to a bound) so the connection can be kept alive.
            let mut reader = answer.body_mut().as_reader();
            match reader.by_ref().take(excerpt_bytes as u64).read_to_end(&mut excerpt) {
                Ok(_) => {
                    let _ = std::io::copy(&mut reader.take(1 << 20), &mut std::io::sink());
                }
                Err(e) => response.error = Some(format!("reading the response: {e}")),
            }
            response.excerpt = Some(String::from_utf8_lossy(&excerpt).into_owned());
        }
        Err(e) => {
            response.hopeless = matches!(e, ureq::Error::BadUri(_) | ureq::Error::Http(_));
            response.error = Some(describe(&e));
        }
    }
    response.duration = clock.elapsed();
    response
}

/// Sends a request with its agent, whose timeout is the request's.
fn call(agent: &ureq::Agent, r: &Request) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    if r.post {
        let mut builder = agent.post(&r.url);
        for (name, value) in &r.headers {
            builder = builder.header(name, value);
        }
        builder.send(r.body.as_deref().unwrap_or("").as_bytes())
    } else {
        let mut builder = agent.get(&r.url);
        for (name, value) in &r.headers {
            builder = builder.header(name, value);
        }
        builder.call()
    }
}

/// A short, stable description of a transport error for the history.
fn describe(e: &ureq::Error) -> String {
    let refused = match e {
        ureq::Error::Rustls(r) => tls::refusal(r),
        ureq::Error::Io(io) => tls::refusal(io),
        _ => None,
    };
    if let Some(refused) = refused {
        return refused;
    }
    match e {
        ureq::Error::Timeout(what) => format!("timeout: {what}"),
        // The guard's refusal (names.rs), as it is.
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => io.to_string(),
        ureq::Error::Io(io) => format!("connection error: {io}"),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::BadUri(why) => format!("the URL cannot be sent: {why}"),
        ureq::Error::Http(why) => format!("the URL cannot be sent: {why}"),
        ureq::Error::ConnectionFailed => "connection error: connection failed".to_string(),
        other => other.to_string(),
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

    fn config(threads: usize) -> PoolConfig {
        PoolConfig {
            threads,
            trust: Trust::default(),
        }
    }

    #[test]
    fn posts_and_reports_status_excerpt_and_retry_after() {
        let (url, server) =
            receiver("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: 11\r\n\r\nslow down!!");
        let pool = Pool::new(config(2), &[], loopback()).unwrap();
        pool.submit(request(url));
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
        pool.submit(request(url));
        assert_eq!(pool.next(Duration::from_secs(5)).unwrap().status, Some(302));
    }

    #[test]
    fn urls_that_cannot_be_sent_are_hopeless() {
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        for url in ["http:///x", "http://exa mple.com/"] {
            pool.submit(request(url.into()));
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
    fn the_pool_threads_block_every_signal_and_the_caller_keeps_its_mask() {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::syscall(libc::SYS_gettid) }.to_string();
        let before = blocked_signals(&me).unwrap();
        let _pool = Pool::new(config(2), &[], loopback()).unwrap();
        assert_eq!(blocked_signals(&me), Some(before));
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

    #[test]
    fn refused_connections_are_errors() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        pool.submit(request(format!("http://127.0.0.1:{port}/")));
        let answer = pool.next(Duration::from_secs(5)).unwrap();
        assert_eq!(answer.status, None);
        assert!(answer.error.unwrap().starts_with("connection error"));
    }

    #[test]
    fn names_that_do_not_resolve_are_host_not_found() {
        let pool = Pool::new(config(1), &[], loopback()).unwrap();
        // A label one longer than DNS allows: the lookup fails without asking a name server.
        pool.submit(request(format!("http://{}.invalid/", "a".repeat(64))));
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
            pool.submit(request(url));
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
        pool.submit(request(url));
        assert_eq!(pool.next(Duration::from_secs(5)).unwrap().status, Some(204));
        server.join().unwrap();
    }
}
