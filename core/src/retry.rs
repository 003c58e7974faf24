//! Retry policies: the wait before each retry, and what one HTTP attempt's outcome means
//! for its callback (delivered, retried later, or failed for good).
//!
//! No pgrx here; the schedules are checked exactly by the unit tests below.

use std::time::Duration;

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The same `step` between attempts.
    Fixed,
    /// Retry n (from 0) waits (n² + 1) × `step`: 1, 2, 5, 10, 17 ... minutes for a 1-minute step.
    Quadratic,
    /// Retry n waits `step` × 2ⁿ, at most `cap`, shortened by up to `jitter` of itself.
    Exponential,
    /// Retry n waits `intervals[n]`.
    Intervals,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "fixed" => Some(Kind::Fixed),
            "quadratic" => Some(Kind::Quadratic),
            "exponential" => Some(Kind::Exponential),
            "intervals" => Some(Kind::Intervals),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub kind: Kind,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub step: Duration,
    pub cap: Duration,
    pub jitter: f64,
    pub intervals: Vec<Duration>,
    /// Only exactly 200 is success (else any 2xx).
    pub exactly_200: bool,
}

impl Policy {
    /// The wait after `attempts_made` failed attempts, before the next; None when none is left.
    /// `random` in [0, 1) draws the jitter.
    pub fn wait(&self, attempts_made: u32, random: f64) -> Option<Duration> {
        if attempts_made == 0 || attempts_made >= self.max_attempts {
            return None;
        }
        let retry = attempts_made - 1;
        match self.kind {
            Kind::Fixed => Some(self.step),
            Kind::Quadratic => Some(self.step * (retry * retry + 1)),
            Kind::Exponential => {
                let factor = 2f64.powi(retry.min(62) as i32);
                let full = self.step.as_secs_f64() * factor;
                let capped = full.min(self.cap.as_secs_f64());
                Some(Duration::from_secs_f64(
                    capped * (1.0 - self.jitter * random.clamp(0.0, 1.0)),
                ))
            }
            Kind::Intervals => self.intervals.get(retry as usize).copied(),
        }
    }

    /// The whole schedule without jitter: the wait before each retry, in order.
    pub fn schedule(&self) -> Vec<Duration> {
        (1..self.max_attempts).filter_map(|n| self.wait(n, 0.0)).collect()
    }

    fn is_success(&self, status: u16) -> bool {
        if self.exactly_200 {
            status == 200
        } else {
            (200..300).contains(&status)
        }
    }
}

/// What one HTTP attempt came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attempt {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// `Retry-After`, parsed, when the answer had one.
    pub retry_after: Option<Duration>,
    /// No answer came for a reason no retry can change (a URL that cannot be sent).
    pub hopeless: bool,
}

/// What happens to the callback after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Try again after this wait.
    Retry(Duration),
    /// No attempt left, or the target said 410 Gone.
    Failed,
}

/// The verdict on attempt number `attempts_made` (from 1). Policy waits are multiplied by
/// `time_scale` (tests compress schedules with it); `Retry-After` on 429 and 503 replaces the
/// policy's wait, unscaled, but never grants more attempts than the policy has.
pub fn judge(policy: &Policy, attempts_made: u32, attempt: &Attempt, time_scale: f64, random: f64) -> Verdict {
    if attempt.hopeless {
        return Verdict::Failed;
    }
    if let Some(status) = attempt.status {
        if policy.is_success(status) {
            return Verdict::Delivered;
        }
        if status == 410 {
            return Verdict::Failed;
        }
    }
    let Some(wait) = policy.wait(attempts_made, random) else {
        return Verdict::Failed;
    };
    match (attempt.status, attempt.retry_after) {
        (Some(429 | 503), Some(after)) => Verdict::Retry(after.min(MAX_RETRY_AFTER)),
        _ => Verdict::Retry(wait.mul_f64(time_scale)),
    }
}

/// `Retry-After`: delay seconds, or an HTTP date (counted from `now_unix`).
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(Duration::from_secs(
        u64::try_from(date.timestamp() - now_unix).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn policy(kind: Kind, max_attempts: u32) -> Policy {
        Policy {
            kind,
            max_attempts,
            step: MIN,
            cap: 10 * MIN,
            jitter: 0.0,
            intervals: vec![],
            exactly_200: false,
        }
    }

    /// The built-in `strict` policy (seed 001).
    fn strict() -> Policy {
        Policy {
            step: 5 * MIN,
            exactly_200: true,
            ..policy(Kind::Fixed, 3)
        }
    }

    /// The built-in `standard` policy (seed 002).
    fn standard() -> Policy {
        policy(Kind::Quadratic, 21)
    }

    #[test]
    fn strict_is_three_attempts_five_minutes_apart() {
        assert_eq!(strict().schedule(), vec![5 * MIN, 5 * MIN]);
    }

    #[test]
    fn standard_is_twenty_retries_of_n_squared_plus_one_minutes() {
        let schedule = standard().schedule();
        assert_eq!(schedule.len(), 20);
        let minutes: Vec<u64> = schedule.iter().map(|d| d.as_secs() / 60).collect();
        assert_eq!(&minutes[..7], &[1, 2, 5, 10, 17, 26, 37]);
        assert_eq!(minutes[19], 19 * 19 + 1);
        let total: Duration = schedule.iter().sum();
        assert_eq!(total, Duration::from_secs(41 * 3600 + 30 * 60), "41.5 hours in all");
    }

    #[test]
    fn exponential_doubles_up_to_its_cap() {
        let p = policy(Kind::Exponential, 7);
        let minutes: Vec<u64> = p.schedule().iter().map(|d| d.as_secs() / 60).collect();
        assert_eq!(minutes, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn jitter_shortens_by_at_most_its_fraction() {
        let p = Policy {
            jitter: 0.5,
            ..policy(Kind::Exponential, 5)
        };
        assert_eq!(p.wait(3, 0.0), Some(4 * MIN));
        assert_eq!(p.wait(3, 0.5), Some(3 * MIN));
        assert_eq!(p.wait(3, 1.0), Some(2 * MIN));
    }

    #[test]
    fn intervals_are_used_in_order() {
        let p = Policy {
            intervals: vec![Duration::from_secs(30), 10 * MIN],
            ..policy(Kind::Intervals, 3)
        };
        assert_eq!(p.schedule(), vec![Duration::from_secs(30), 10 * MIN]);
        assert_eq!(p.wait(3, 0.0), None);
    }

    #[test]
    fn success_is_any_2xx_or_exactly_200() {
        let ok = |status| Attempt {
            status: Some(status),
            retry_after: None,
            hopeless: false,
        };
        assert_eq!(judge(&standard(), 1, &ok(204), 1.0, 0.0), Verdict::Delivered);
        assert_eq!(judge(&strict(), 1, &ok(200), 1.0, 0.0), Verdict::Delivered);
        assert_eq!(judge(&strict(), 1, &ok(204), 1.0, 0.0), Verdict::Retry(5 * MIN));
        assert_eq!(
            judge(&standard(), 1, &ok(302), 1.0, 0.0),
            Verdict::Retry(MIN),
            "redirects are not followed"
        );
    }

    #[test]
    fn failures_retry_until_the_attempts_are_spent() {
        let error = Attempt::default();
        assert_eq!(judge(&strict(), 1, &error, 1.0, 0.0), Verdict::Retry(5 * MIN));
        assert_eq!(judge(&strict(), 2, &error, 1.0, 0.0), Verdict::Retry(5 * MIN));
        assert_eq!(judge(&strict(), 3, &error, 1.0, 0.0), Verdict::Failed);
    }

    #[test]
    fn time_scale_compresses_policy_waits() {
        let error = Attempt {
            status: Some(500),
            retry_after: None,
            hopeless: false,
        };
        assert_eq!(
            judge(&strict(), 1, &error, 0.001, 0.0),
            Verdict::Retry(Duration::from_millis(300))
        );
    }

    #[test]
    fn gone_stops_retrying() {
        let gone = Attempt {
            status: Some(410),
            retry_after: None,
            hopeless: false,
        };
        assert_eq!(judge(&standard(), 1, &gone, 1.0, 0.0), Verdict::Failed);
        let hopeless = Attempt {
            status: None,
            retry_after: None,
            hopeless: true,
        };
        assert_eq!(judge(&standard(), 1, &hopeless, 1.0, 0.0), Verdict::Failed);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let after = Some(Duration::from_secs(120));
        let busy = |status| Attempt {
            status: Some(status),
            retry_after: after,
            hopeless: false,
        };
        assert_eq!(
            judge(&standard(), 1, &busy(429), 0.001, 0.0),
            Verdict::Retry(Duration::from_secs(120))
        );
        assert_eq!(
            judge(&standard(), 1, &busy(503), 1.0, 0.0),
            Verdict::Retry(Duration::from_secs(120))
        );
        assert_eq!(judge(&standard(), 1, &busy(500), 1.0, 0.0), Verdict::Retry(MIN));
        assert_eq!(judge(&strict(), 3, &busy(429), 1.0, 0.0), Verdict::Failed);
        let huge = Attempt {
            status: Some(429),
            retry_after: Some(Duration::from_secs(10 * 86400)),
            hopeless: false,
        };
        assert_eq!(judge(&standard(), 1, &huge, 1.0, 0.0), Verdict::Retry(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 120 ", 0), Some(Duration::from_secs(120)));
        let now = chrono::DateTime::parse_from_rfc2822("Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap()
            .timestamp();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
