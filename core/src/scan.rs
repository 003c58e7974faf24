//! Where a worker's next claim starts reading the due queue (its pending callbacks in order of
//! due time and id), and whether it reads only a window of it.
//!
//! A claim reads from a cursor: the callbacks before it are leased (skipping them row by row
//! made each claim cost more the more were on the wire). A claim that skips endpoints (those
//! this worker has enough of, pg_callback_core::dispatch) may have to read past a long run of
//! their callbacks: a slow endpoint's backlog of a million. Such a claim reads at most a window
//! after one that came back short (or from the start), and the next goes on after it; once a
//! claim that skips endpoints has read to the end, the next ones start where it did, not from
//! the start, for RESTART_AFTER.

use std::time::{Duration, Instant};

/// A place in the due queue: a callback's due time (Unix seconds) and id.
pub type Position = (f64, i64);

/// How long claims that skip endpoints keep starting where the last read to the end, rather
/// than from the start: callbacks given back unsent keep their due time, before that place,
/// and wait at most this long for a claim to find them.
pub const RESTART_AFTER: Duration = Duration::from_secs(5);

/// Where the next claim reads.
#[derive(Debug, Default)]
pub struct Scan {
    cursor: Option<Position>,
    /// The last claim came back full: the callbacks after it are likely its to take.
    after_full: bool,
    /// Since when claims start at `cursor` though the last read to the end.
    kept_since: Option<Instant>,
}

/// What the next claim reads.
#[derive(Debug, PartialEq)]
pub struct Read {
    /// Start after this place (None: from the start).
    pub after: Option<Position>,
    /// If it skips endpoints, read at most a window.
    pub window: bool,
}

/// What a claim found.
#[derive(Debug)]
pub struct Found {
    /// It skipped endpoints.
    pub skipping: bool,
    /// It took as many as it was asked for.
    pub full: bool,
    /// The place of the last callback it took.
    pub last: Option<Position>,
    /// Where the window it read ended, when that was before the end of the queue.
    pub window_end: Option<Position>,
}

impl Scan {
    pub fn next(&self) -> Read {
        Read {
            after: self.cursor,
            window: !self.after_full,
        }
    }

    /// Takes what the claim found; whether another claim should follow at once (it read a
    /// window that ended before the queue did).
    pub fn found(&mut self, found: Found, now: Instant) -> bool {
        self.after_full = found.full;
        if found.full {
            (self.cursor, self.kept_since) = (found.last, None);
            return false;
        }
        if let Some(end) = found.window_end {
            (self.cursor, self.kept_since) = (Some(end), None);
            return true;
        }
        // Read to the end. Without skipping, the start is cheap to read again; with it, the
        // skipped run before this place would be read again at every claim.
        let kept_since = *self.kept_since.get_or_insert(now);
        if !found.skipping || now.saturating_duration_since(kept_since) >= RESTART_AFTER {
            (self.cursor, self.kept_since) = (None, None);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(skipping: bool, full: bool, last: Option<Position>, window_end: Option<Position>) -> Found {
        Found {
            skipping,
            full,
            last,
            window_end,
        }
    }

    #[test]
    fn a_full_claim_is_followed_after_its_last_without_a_window() {
        let mut scan = Scan::default();
        assert_eq!(
            scan.next(),
            Read {
                after: None,
                window: true
            }
        );
        assert!(!scan.found(found(true, true, Some((10.0, 7)), None), Instant::now()));
        assert_eq!(
            scan.next(),
            Read {
                after: Some((10.0, 7)),
                window: false
            }
        );
    }

    #[test]
    fn a_window_read_through_is_followed_at_once_after_it() {
        let mut scan = Scan::default();
        assert!(scan.found(found(true, false, None, Some((12.0, 40))), Instant::now()));
        assert_eq!(
            scan.next(),
            Read {
                after: Some((12.0, 40)),
                window: true
            }
        );
    }

    #[test]
    fn reading_to_the_end_starts_over_unless_skipping_then_after_a_while() {
        let now = Instant::now();
        let mut scan = Scan::default();
        scan.found(found(false, true, Some((10.0, 7)), None), now);
        // Nothing skipped: from the start next time.
        scan.found(found(false, false, Some((11.0, 9)), None), now);
        assert_eq!(
            scan.next(),
            Read {
                after: None,
                window: true
            }
        );
        // Skipping: a window read through, then the end; the next claims start where that one did.
        scan.found(found(true, false, None, Some((12.0, 40))), now);
        scan.found(found(true, false, None, None), now);
        assert_eq!(
            scan.next(),
            Read {
                after: Some((12.0, 40)),
                window: true
            }
        );
        scan.found(found(true, false, None, None), now + RESTART_AFTER / 2);
        assert_eq!(scan.next().after, Some((12.0, 40)));
        // Until RESTART_AFTER has passed since it first did.
        scan.found(found(true, false, None, None), now + RESTART_AFTER);
        assert_eq!(
            scan.next(),
            Read {
                after: None,
                window: true
            }
        );
    }
}
