//! Endpoint health: after a run of consecutive failures (no answer, or a 5xx) an endpoint is
//! down. Its callbacks then wait instead of each spending its own attempts; one at a time, a
//! probe (the next callback due, sent as any other) tests it, on an interval that doubles
//! after each failed probe up to a longest; the first answer brings it back up.
//!
//! In: an endpoint's state and the outcomes of a batch of its requests. Out: its new state and
//! what changed, for the worker to write (src/deliver/health.rs).

use std::time::Duration;

/// When an endpoint goes down, and how it is probed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Consecutive failures that take an endpoint down; 0: never.
    pub down_after: u32,
    /// The wait before the first probe.
    pub first_probe: Duration,
    /// The longest wait between probes.
    pub longest_probe: Duration,
}

/// What the workers know of an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub down: bool,
    /// Failures since the last answer.
    pub failures: u32,
    /// Down: the wait before the next probe.
    pub probe_interval: Duration,
    /// Down: the callback being sent as the probe.
    pub probe: Option<i64>,
}

impl State {
    pub fn up() -> State {
        State {
            down: false,
            failures: 0,
            probe_interval: Duration::ZERO,
            probe: None,
        }
    }
}

/// How one request to the endpoint went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The callback sent.
    pub callback: i64,
    pub failed: bool,
}

/// Whether an attempt counts against its endpoint: no answer (refused, timed out, reset, a
/// TLS failure), or a 5xx. Any other answer shows the endpoint up, whatever it says of the
/// callback; a URL that cannot be sent says nothing of the endpoint.
pub fn is_failure(status: Option<u16>, hopeless: bool) -> bool {
    match status {
        Some(status) => status >= 500,
        None => !hopeless,
    }
}

/// What a batch of outcomes changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing but the count of failures.
    None,
    /// It went down: its callbacks wait for the first probe.
    Down,
    /// Its probe failed: they wait for the next, after a longer interval.
    ProbeFailed,
    /// It answered: its callbacks go again.
    Up,
}

/// The state after `outcomes`, in the order they came, and the last change they made.
pub fn after(state: &State, outcomes: &[Outcome], rules: &Rules) -> (State, Change) {
    let mut next = state.clone();
    let mut change = Change::None;
    for outcome in outcomes {
        if !outcome.failed {
            if next.down {
                change = Change::Up;
            }
            next = State::up();
            continue;
        }
        next.failures = next.failures.saturating_add(1);
        if next.down && next.probe == Some(outcome.callback) {
            next.probe = None;
            next.probe_interval = (next.probe_interval * 2).min(rules.longest_probe);
            change = Change::ProbeFailed;
        } else if !next.down && rules.down_after > 0 && next.failures >= rules.down_after {
            next.down = true;
            next.probe_interval = rules.first_probe.min(rules.longest_probe);
            next.probe = None;
            change = Change::Down;
        }
    }
    (next, change)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        down_after: 3,
        first_probe: Duration::from_secs(30),
        longest_probe: Duration::from_secs(100),
    };

    fn outcomes(failed: &[bool]) -> Vec<Outcome> {
        failed
            .iter()
            .enumerate()
            .map(|(i, &failed)| Outcome {
                callback: i as i64 + 1,
                failed,
            })
            .collect()
    }

    #[test]
    fn consecutive_failures_take_an_endpoint_down_and_an_answer_resets_them() {
        let (state, change) = after(&State::up(), &outcomes(&[true, true, false, true, true]), &RULES);
        assert_eq!((state.down, state.failures, change), (false, 2, Change::None));
        let (state, change) = after(&state, &outcomes(&[true]), &RULES);
        assert_eq!((state.down, state.failures, change), (true, 3, Change::Down));
        assert_eq!(state.probe_interval, Duration::from_secs(30));
    }

    #[test]
    fn never_down_when_the_rule_is_off() {
        let off = Rules { down_after: 0, ..RULES };
        let (state, change) = after(&State::up(), &outcomes(&[true; 50]), &off);
        assert_eq!((state.down, state.failures, change), (false, 50, Change::None));
    }

    #[test]
    fn failed_probes_double_the_interval_up_to_the_longest() {
        let mut state = State {
            down: true,
            failures: 3,
            probe_interval: Duration::from_secs(30),
            probe: Some(7),
        };
        let probe = |state: &State| Outcome {
            callback: state.probe.unwrap(),
            failed: true,
        };
        // A failure of a request sent before it went down is not the probe's.
        let (same, change) = after(
            &state,
            &[Outcome {
                callback: 1,
                failed: true,
            }],
            &RULES,
        );
        assert_eq!(
            (same.probe, same.probe_interval, change),
            (Some(7), Duration::from_secs(30), Change::None)
        );
        let mut intervals = Vec::new();
        for _ in 0..3 {
            let (next, change) = after(&state, &[probe(&state)], &RULES);
            assert_eq!((next.down, next.probe, change), (true, None, Change::ProbeFailed));
            intervals.push(next.probe_interval.as_secs());
            state = State { probe: Some(7), ..next };
        }
        assert_eq!(intervals, [60, 100, 100]);
    }

    #[test]
    fn any_answer_brings_it_up() {
        let down = State {
            down: true,
            failures: 9,
            probe_interval: Duration::from_secs(60),
            probe: Some(4),
        };
        let (state, change) = after(
            &down,
            &[Outcome {
                callback: 4,
                failed: false,
            }],
            &RULES,
        );
        assert_eq!((state, change), (State::up(), Change::Up));
    }

    #[test]
    fn failures_are_no_answer_or_a_5xx() {
        assert!(is_failure(None, false));
        assert!(is_failure(Some(503), false));
        assert!(!is_failure(Some(404), false));
        assert!(!is_failure(Some(429), false));
        assert!(!is_failure(None, true));
    }
}
