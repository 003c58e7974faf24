//! Which claimed callback a worker sends next: at most `max_in_flight` requests at once and at
//! most `max_in_flight_per_host` to any one endpoint (scheme, host and port: a callback's
//! `endpoint`, computed when it was rendered), so one slow or dead endpoint holds a few
//! requests in flight, never all of them. The worker (src/deliver/worker.rs) feeds it claimed callbacks
//! and answers, and asks it what to send, what to give back unsent, and which endpoints a
//! claim should skip because it has enough of their callbacks already.

// Maps keyed by callback id and endpoint, looked up several times for every callback sent: Fx
// hashing, not SipHash (3 % of the machine in a drain, BENCHMARKS.md); the keys are our own.
use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a claimed callback should wait in the worker for a free slot of its endpoint, at
/// the rate that endpoint answers: a claim skips an endpoint that has that much to do already.
const QUEUE_TIME: Duration = Duration::from_secs(1);

/// The limits a worker works within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests in flight at once.
    pub in_flight: usize,
    /// Requests in flight at once to one endpoint.
    pub per_endpoint: usize,
}

/// A rate a callback is sent within: at most one request per `every` for all the callbacks
/// of this worker with the same `key` (an endpoint's limit, or an account's at an endpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    pub key: String,
    pub every: Duration,
}

impl Pace {
    /// One worker's share of a limit of `per_second` requests shared by `workers`, with a
    /// margin of 2 % so that requests bunched up on their way still arrive within it.
    pub fn share(key: String, per_second: f64, workers: usize) -> Pace {
        let every = workers.max(1) as f64 / per_second.max(1e-6) * 1.02;
        Pace {
            key,
            every: Duration::from_secs_f64(every.min(3600.0)),
        }
    }
}

/// What one endpoint has with this worker.
struct Load {
    name: String,
    queued: usize,
    /// Queued callbacks without a pace.
    unpaced: usize,
    in_flight: usize,
    /// How long its answers take, a moving average; None until one came.
    answer_time: Option<Duration>,
    /// When it last answered, or was sent a request with none in flight: with requests in
    /// flight, its answers take at least as long as it has been silent since.
    heard_at: Instant,
    /// The slowest pace of its callbacks last added, if any: how many a claim should bring.
    pace: Option<Duration>,
}

impl Load {
    fn new(name: &str) -> Load {
        Load {
            name: name.to_string(),
            queued: 0,
            unpaced: 0,
            in_flight: 0,
            answer_time: None,
            heard_at: Instant::now(),
            pace: None,
        }
    }

    /// How long its answers take as far as this worker can tell at `now`: the moving
    /// average, or longer while the requests in flight have been unanswered for longer.
    fn answer_time(&self, now: Instant) -> Option<Duration> {
        let silent = (self.in_flight > 0).then(|| now.saturating_duration_since(self.heard_at));
        match (self.answer_time, silent) {
            (Some(average), Some(silent)) => Some(average.max(silent)),
            (average, silent) => average.or(silent),
        }
    }

    /// Whether it has as many callbacks queued and in flight as this worker can send within
    /// QUEUE_TIME at the rate it answers (at least two rounds of its slots), or, paced, at its
    /// pace.
    fn full(&self, limits: Limits, now: Instant) -> bool {
        let waiting = (self.queued + self.in_flight) as f64;
        if let Some(every) = self.pace {
            return waiting >= (QUEUE_TIME.as_secs_f64() / every.as_secs_f64().max(1e-6)).max(1.0);
        }
        let depth = match self.answer_time(now) {
            Some(t) => (QUEUE_TIME.as_secs_f64() / t.as_secs_f64().max(1e-6)).max(2.0),
            None => 2.0,
        };
        waiting >= limits.per_endpoint as f64 * depth
    }
}

struct Queued<T> {
    key: i64,
    /// Its endpoint's place in `Dispatcher::endpoints`: the queue is walked past the callbacks
    /// of full endpoints at every look, a number compared where a name was hashed.
    endpoint: usize,
    /// Given back unsent after this, well before its lease ends.
    release_at: Instant,
    paces: Vec<Pace>,
    item: T,
}

/// The claimed callbacks of one worker: queued (claimed, not sent) and in flight.
pub struct Dispatcher<T> {
    queue: VecDeque<Queued<T>>,
    /// How many queued callbacks have no pace: those a claim waits for to leave.
    unpaced: usize,
    in_flight: HashMap<i64, (usize, T)>,
    /// When each pace lets its next callback go.
    next_at: HashMap<String, Instant>,
    endpoints: Vec<Load>,
    /// Each endpoint's place in `endpoints`, by name.
    places: HashMap<String, usize>,
}

impl<T> Default for Dispatcher<T> {
    fn default() -> Self {
        Dispatcher {
            queue: VecDeque::new(),
            unpaced: 0,
            in_flight: HashMap::default(),
            next_at: HashMap::default(),
            endpoints: Vec::new(),
            places: HashMap::default(),
        }
    }
}

impl<T> Dispatcher<T> {
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queued callbacks that wait only for a free slot, not for a pace.
    pub fn queued_unpaced(&self) -> usize {
        self.unpaced
    }

    /// Queued callbacks that wait only for a free slot of an endpoint that is not full at
    /// `now`: those a claim waits for to leave. A full endpoint's (one that answers slowly, or
    /// has not answered for a while) may wait minutes, and must not keep this worker from
    /// claiming the others' meanwhile (it skips that endpoint's).
    pub fn queued_for_slots(&self, limits: Limits, now: Instant) -> usize {
        let full: usize = self
            .endpoints
            .iter()
            .filter(|load| load.unpaced > 0 && load.full(limits, now))
            .map(|load| load.unpaced)
            .sum();
        self.unpaced - full
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    /// A claimed callback to `endpoint`, to be sent in claim order as its endpoint has room
    /// and its `paces` allow.
    pub fn add(&mut self, key: i64, endpoint: &str, release_at: Instant, paces: Vec<Pace>, item: T) {
        let place = match self.places.get(endpoint) {
            Some(&place) => place,
            None => {
                self.endpoints.push(Load::new(endpoint));
                self.places.insert(endpoint.to_string(), self.endpoints.len() - 1);
                self.endpoints.len() - 1
            }
        };
        let load = &mut self.endpoints[place];
        load.queued += 1;
        load.unpaced += usize::from(paces.is_empty());
        load.pace = paces.iter().map(|p| p.every).max();
        self.unpaced += usize::from(paces.is_empty());
        self.queue.push_back(Queued {
            key,
            endpoint: place,
            release_at,
            paces,
            item,
        });
    }

    /// Whether every pace of `paces` lets a callback go at `now`; if so, each counts it.
    fn pace_allows(next_at: &mut HashMap<String, Instant>, paces: &[Pace], now: Instant) -> bool {
        if paces.iter().any(|p| next_at.get(&p.key).is_some_and(|&at| at > now)) {
            return false;
        }
        for p in paces {
            let at = next_at.get(&p.key).map_or(now, |&at| at.max(now));
            next_at.insert(p.key.clone(), at + p.every);
        }
        true
    }

    /// Moves what may go at `now` from the queue to in flight, and returns it, oldest first.
    /// Stops at the overall limit, and once no endpoint with queued callbacks has room, so a
    /// full worker pays nothing for a long queue (it looks after every answer).
    pub fn to_send(&mut self, limits: Limits, now: Instant) -> Vec<&T> {
        let per_endpoint = limits.per_endpoint.max(1);
        let mut open = self
            .endpoints
            .iter()
            .filter(|load| load.queued > 0 && load.in_flight < per_endpoint)
            .count();
        let mut keys = Vec::new();
        let mut i = 0;
        while open > 0 && i < self.queue.len() && self.in_flight.len() < limits.in_flight {
            let endpoint = &mut self.endpoints[self.queue[i].endpoint];
            if endpoint.in_flight >= per_endpoint || !Self::pace_allows(&mut self.next_at, &self.queue[i].paces, now) {
                i += 1;
                continue;
            }
            if endpoint.in_flight == 0 {
                endpoint.heard_at = now;
            }
            endpoint.queued -= 1;
            endpoint.unpaced -= usize::from(self.queue[i].paces.is_empty());
            endpoint.in_flight += 1;
            if endpoint.queued == 0 || endpoint.in_flight >= per_endpoint {
                open -= 1;
            }
            let Some(q) = self.queue.remove(i) else { break };
            self.unpaced -= usize::from(q.paces.is_empty());
            keys.push(q.key);
            self.in_flight.insert(q.key, (q.endpoint, q.item));
        }
        keys.iter().map(|k| &self.in_flight[k].1).collect()
    }

    /// The callback an answer was for, taken out; its endpoint's answer time is updated.
    pub fn answered(&mut self, key: i64, took: Duration) -> Option<T> {
        let (endpoint, item) = self.in_flight.remove(&key)?;
        let h = &mut self.endpoints[endpoint];
        h.in_flight -= 1;
        h.heard_at = Instant::now();
        h.answer_time = Some(match h.answer_time {
            Some(avg) => avg.mul_f64(0.8) + took.mul_f64(0.2),
            None => took,
        });
        Some(item)
    }

    /// Queued callbacks past their release time, taken out (to be given back unsent). The
    /// queue is in claim order, so they are at its front.
    pub fn overdue(&mut self, now: Instant) -> Vec<T> {
        let mut gone = Vec::new();
        while self.queue.front().is_some_and(|q| q.release_at <= now) {
            let Some(q) = self.queue.pop_front() else { break };
            let h = &mut self.endpoints[q.endpoint];
            h.queued -= 1;
            h.unpaced -= usize::from(q.paces.is_empty());
            self.unpaced -= usize::from(q.paces.is_empty());
            gone.push(q.item);
        }
        gone
    }

    /// The queued callbacks of `endpoint` (not those in flight), taken out: it went down, and
    /// they wait for its probe instead.
    pub fn take_queued(&mut self, endpoint: &str) -> Vec<T> {
        let Some(&place) = self.places.get(endpoint) else {
            return Vec::new();
        };
        let (taken, kept): (VecDeque<_>, VecDeque<_>) = self.queue.drain(..).partition(|q| q.endpoint == place);
        self.queue = kept;
        let load = &mut self.endpoints[place];
        (load.queued, load.unpaced) = (0, 0);
        self.unpaced -= taken.iter().filter(|q| q.paces.is_empty()).count();
        taken.into_iter().map(|q| q.item).collect()
    }

    /// Everything claimed and not answered, taken out: the worker is stopping.
    pub fn take_all(&mut self) -> Vec<T> {
        self.endpoints
            .iter_mut()
            .for_each(|h| (h.queued, h.unpaced, h.in_flight) = (0, 0, 0));
        self.unpaced = 0;
        let queued = self.queue.drain(..).map(|q| q.item);
        queued
            .chain(self.in_flight.drain().map(|(_, (_, item))| item))
            .collect()
    }

    /// The endpoints a claim should skip at `now`: those that are full (Load::full).
    pub fn full_endpoints(&self, limits: Limits, now: Instant) -> Vec<String> {
        self.endpoints
            .iter()
            .filter(|load| load.full(limits, now))
            .map(|load| load.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        in_flight: 4,
        per_endpoint: 2,
    };

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_busy_endpoint_does_not_hold_up_the_others() {
        let mut d = Dispatcher::default();
        for key in 0..5 {
            d.add(key, "http://slow", later(), vec![], key);
        }
        d.add(10, "http://fast", later(), vec![], 10);
        // Two to the slow endpoint (its limit), then the fast one, though claimed after the others.
        assert_eq!(d.to_send(LIMITS, Instant::now()), vec![&0, &1, &10]);
        assert_eq!((d.queued(), d.in_flight()), (3, 3));
        // Nothing more for the slow endpoint until one of its requests is answered.
        assert!(d.to_send(LIMITS, Instant::now()).is_empty());
        assert_eq!(d.answered(0, Duration::from_secs(2)), Some(0));
        assert_eq!(d.to_send(LIMITS, Instant::now()), vec![&2]);
    }

    #[test]
    fn endpoints_filling_up_do_not_stop_the_look_before_the_last_with_room() {
        let mut d = Dispatcher::default();
        for (key, endpoint) in [(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "a"), (5, "b"), (6, "c")] {
            d.add(key, endpoint, later(), vec![], key);
        }
        let limits = Limits {
            in_flight: 10,
            per_endpoint: 2,
        };
        assert_eq!(d.to_send(limits, Instant::now()), vec![&0, &1, &2, &3, &6]);
        // Every endpoint with queued callbacks is full: nothing goes until an answer comes.
        assert!(d.to_send(limits, Instant::now()).is_empty());
        assert_eq!(d.answered(2, Duration::from_millis(1)), Some(2));
        assert_eq!(d.to_send(limits, Instant::now()), vec![&5]);
    }

    #[test]
    fn in_flight_is_bounded_overall() {
        let mut d = Dispatcher::default();
        for key in 0..6 {
            d.add(key, &format!("http://endpoint{key}"), later(), vec![], key);
        }
        assert_eq!(d.to_send(LIMITS, Instant::now()).len(), 4);
        assert_eq!(d.queued(), 2);
    }

    #[test]
    fn overdue_callbacks_are_given_back_and_everything_on_stop() {
        let mut d = Dispatcher::default();
        d.add(1, "http://a", Instant::now(), vec![], 1);
        d.add(2, "http://a", later(), vec![], 2);
        d.add(3, "http://a", later(), vec![], 3);
        assert_eq!(d.overdue(Instant::now()), vec![1]);
        assert_eq!(d.to_send(LIMITS, Instant::now()), vec![&2, &3]);
        d.add(4, "http://a", later(), vec![], 4);
        let mut all = d.take_all();
        all.sort();
        assert_eq!(all, vec![2, 3, 4]);
        assert!(d.is_empty());
    }

    #[test]
    fn the_queued_callbacks_of_an_endpoint_that_went_down_are_taken_out() {
        let mut d = Dispatcher::default();
        for key in 1..=4 {
            d.add(
                key,
                if key % 2 == 0 { "http://down" } else { "http://up" },
                later(),
                vec![],
                key,
            );
        }
        let limits = Limits {
            in_flight: 16,
            per_endpoint: 1,
        };
        assert_eq!(d.to_send(limits, Instant::now()), vec![&1, &2]);
        d.add(6, "http://down", later(), vec![], 6);
        assert_eq!(d.take_queued("http://down"), vec![4, 6]);
        assert_eq!((d.queued(), d.queued_unpaced(), d.in_flight()), (1, 1, 2));
        assert_eq!(d.answered(2, Duration::from_millis(1)), Some(2));
        assert_eq!(d.to_send(limits, Instant::now()), Vec::<&i64>::new());
        d.answered(1, Duration::from_millis(1));
        assert_eq!(d.to_send(limits, Instant::now()), vec![&3]);
    }

    #[test]
    fn claims_skip_endpoints_with_enough_to_do() {
        let mut d = Dispatcher::default();
        d.add(1, "http://slow", later(), vec![], 1);
        d.add(2, "http://fast", later(), vec![], 2);
        d.to_send(LIMITS, Instant::now());
        d.answered(1, Duration::from_secs(2));
        d.answered(2, Duration::from_millis(1));
        // Two rounds of its two slots for the slow endpoint; a second's worth (2000) for the fast one.
        for key in 10..13 {
            d.add(key, "http://slow", later(), vec![], key);
            d.add(key + 100, "http://fast", later(), vec![], key);
        }
        assert!(d.full_endpoints(LIMITS, Instant::now()).is_empty());
        d.add(13, "http://slow", later(), vec![], 13);
        assert_eq!(
            d.full_endpoints(LIMITS, Instant::now()),
            vec!["http://slow".to_string()]
        );
        // A endpoint never answered yet is full at two rounds too.
        for key in 20..24 {
            d.add(key, "http://new", later(), vec![], key);
        }
        let mut full = d.full_endpoints(LIMITS, Instant::now());
        full.sort();
        assert_eq!(full, vec!["http://new".to_string(), "http://slow".to_string()]);
    }

    #[test]
    fn an_endpoint_silent_for_long_is_full_and_its_queue_does_not_hold_up_claims() {
        let mut d = Dispatcher::default();
        for key in 0..1000 {
            d.add(key, "http://silent", later(), vec![], key);
        }
        let sent = Instant::now();
        assert_eq!(d.to_send(LIMITS, sent).len(), 2);
        // Just sent, it may be as fast as any: its queue is what the next claim waits for.
        assert!(d.full_endpoints(LIMITS, sent).is_empty());
        assert_eq!(d.queued_for_slots(LIMITS, sent), 998);
        // Unanswered for 100 ms, it answers at most ten rounds a second: 998 are far more than
        // a second's worth of its two slots. A claim skips it and is not kept waiting for them.
        let later_on = sent + Duration::from_millis(100);
        assert_eq!(d.full_endpoints(LIMITS, later_on), vec!["http://silent".to_string()]);
        assert_eq!(d.queued_for_slots(LIMITS, later_on), 0);
        d.add(2000, "http://other", later(), vec![], 2000);
        assert_eq!((d.queued_unpaced(), d.queued_for_slots(LIMITS, later_on)), (999, 1));
        // Heard at last, in 100 ms: a second's worth, ten rounds of two, is still far less.
        assert_eq!(d.answered(0, Duration::from_millis(100)), Some(0));
        assert_eq!(
            d.full_endpoints(LIMITS, Instant::now()),
            vec!["http://silent".to_string()]
        );
    }

    #[test]
    fn paced_callbacks_go_one_per_interval_and_the_others_pass_them() {
        let limits = Limits {
            in_flight: 100,
            per_endpoint: 100,
        };
        let pace = |key: &str| {
            vec![Pace {
                key: key.into(),
                every: Duration::from_millis(10),
            }]
        };
        let mut d = Dispatcher::default();
        for key in 0..5 {
            d.add(key, "http://limited", later(), pace("http://limited"), key);
        }
        d.add(9, "http://free", later(), vec![], 9);
        assert_eq!((d.queued(), d.queued_unpaced()), (6, 1));
        let t0 = Instant::now();
        // One of the limited endpoint's, and the free one's though it came after the others.
        assert_eq!(d.to_send(limits, t0), vec![&0, &9]);
        assert!(d.to_send(limits, t0 + Duration::from_millis(9)).is_empty());
        assert_eq!(d.to_send(limits, t0 + Duration::from_millis(10)), vec![&1]);
        // Late: one goes, and the next waits a whole interval from then, not from before.
        assert_eq!(d.to_send(limits, t0 + Duration::from_millis(50)), vec![&2]);
        assert!(d.to_send(limits, t0 + Duration::from_millis(55)).is_empty());
        assert_eq!(d.to_send(limits, t0 + Duration::from_millis(60)), vec![&3]);
        // A second worth of a paced endpoint (100 at 10 ms) is all a claim should bring.
        for key in 10..110 {
            d.add(key, "http://limited", later(), pace("http://limited"), key);
        }
        assert_eq!(
            d.full_endpoints(limits, Instant::now()),
            vec!["http://limited".to_string()]
        );
    }
}
