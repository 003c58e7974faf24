//! The HTTP pool alone against a receiver (BENCHMARKS.md, "Where the time goes"): N POSTs of
//! a 400-byte body, M in flight, one answer taken for each request sent, as a worker does; the
//! rate and the process's CPU time per request.
//!
//!     cargo run --release -p pg_callback_core --example http_client_rate -- URL [N] [M] [CA]
//!
//! CA: a PEM bundle to trust, for an https URL (bench/run.sh makes one for its nginx).

use pg_callback_core::destinations::Destinations;
use pg_callback_core::http::{Pool, PoolConfig, Request};
use pg_callback_core::tls::Trust;
use std::time::{Duration, Instant};

/// User and system CPU time of this process so far, in seconds.
fn cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().expect("a receiver's URL (loopback)");
    let n: usize = args
        .get(2)
        .map_or(100_000, |s| s.parse().expect("a number of requests"));
    let in_flight: usize = args.get(3).map_or(16, |s| s.parse().expect("a number in flight"));
    let config = PoolConfig {
        in_flight,
        trust: Trust::default(),
    };
    let roots = match args.get(4) {
        Some(path) => pg_callback_core::tls::bundle_certificates(std::path::Path::new(path)).expect("a CA bundle"),
        None => Vec::new(),
    };
    let pool = Pool::new(config, &roots, Destinations::parse("127.0.0.1").unwrap()).unwrap();
    let body = "x".repeat(400);
    let request = |key: usize| Request {
        key: key as i64,
        post: true,
        url: url.clone(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), format!("msg_{key}")),
        ],
        body: Some(body.clone()),
        timeout: Duration::from_secs(10),
        excerpt_bytes: 256,
        identity: None,
    };
    let (cpu_before, clock) = (cpu(), Instant::now());
    let mut sent = 0;
    while sent < in_flight.min(n) {
        pool.submit([request(sent)]);
        sent += 1;
    }
    for _ in 0..n {
        let answer = pool.next(Duration::from_secs(10)).expect("an answer within 10 s");
        assert_eq!(answer.status, Some(200), "{answer:?}");
        if sent < n {
            pool.submit([request(sent)]);
            sent += 1;
        }
    }
    let (seconds, cpu) = (clock.elapsed().as_secs_f64(), cpu() - cpu_before);
    println!(
        "{n} requests, {in_flight} in flight: {seconds:.2} s, {:.0}/s, {:.1} µs of CPU per request",
        n as f64 / seconds,
        cpu * 1e6 / n as f64
    );
}
