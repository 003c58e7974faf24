//! The pool against receivers the tests run on loopback: what a request came to, kept
//! connections, the destination guard, the threads' signals.

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

/// Sends one request to `url` and waits for its answer: the status and the error.
fn sent(pool: &Pool, url: &str) -> (Option<u16>, Option<String>) {
    pool.submit([request(url.to_string())]);
    let answer = pool.next(Duration::from_secs(5)).unwrap();
    (answer.status, answer.error)
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
    let (url, _server) = receiver("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n");
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
        assert_eq!(sent(&pool, &url), (Some(200), None));
    }
    // The receiver took one connection only, and has ended.
    server.join().unwrap();
}

#[test]
fn a_reload_with_the_same_destinations_keeps_the_connections() {
    // One connection for both requests: the receiver takes no second one.
    let (url, server) = keep_alive_receiver(vec![2], Duration::ZERO);
    let pool = Pool::new(config(1), &[], loopback()).unwrap();
    for _ in 0..2 {
        assert_eq!(sent(&pool, &url), (Some(200), None));
        pool.allow(loopback());
    }
    server.join().unwrap();
}

#[test]
fn a_kept_connection_the_receiver_closed_is_replaced_without_an_error() {
    // The receiver closes each connection 20 ms after its answer: the next request, 40 ms
    // later, finds the kept connection closed.
    let (url, server) = keep_alive_receiver(vec![1; 10], Duration::from_millis(20));
    let pool = Pool::new(config(1), &[], loopback()).unwrap();
    for round in 0..10 {
        assert_eq!((round, sent(&pool, &url)), (round, (Some(200), None)));
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
