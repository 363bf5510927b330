//! The pure part of supervision: which children a failure restarts, and when
//! too many failures mean the node itself has failed. No actix, no clock:
//! time comes in as virtual microseconds.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

/// How a supervisor reacts when one of its children fails (Erlang/OTP
/// vocabulary). Children are ordered by start order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartStrategy {
    /// Restart only the failed child.
    #[default]
    OneForOne,
    /// Restart every child of the node.
    OneForAll,
    /// Restart the failed child and every child started after it.
    RestForOne,
}

impl RestartStrategy {
    /// The start-order positions restarted when the child at `failed` of
    /// `children` fails. Always contains `failed`.
    pub fn affected(self, failed: usize, children: usize) -> Range<usize> {
        assert!(
            failed < children,
            "failed child {failed} out of {children} children"
        );
        let range = match self {
            Self::OneForOne => failed..failed + 1,
            Self::OneForAll => 0..children,
            Self::RestForOne => failed..children,
        };
        debug_assert!(range.contains(&failed));
        range
    }
}

/// At most `max_restarts` restarts within any window of length `within`;
/// one failure more and the node is declared failed. One failure counts once,
/// however many siblings its strategy restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartIntensity {
    /// Restarts allowed inside one window (0: the first failure fails the node).
    pub max_restarts: u32,
    /// Length of the window.
    pub within: Duration,
}

impl Default for RestartIntensity {
    /// 10 restarts within 10 seconds.
    fn default() -> Self {
        Self {
            max_restarts: 10,
            within: Duration::from_secs(10),
        }
    }
}

/// What the supervisor must do about one failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart the children the strategy names.
    Restart,
    /// The intensity is exceeded: `restarts_in_window` restarts already
    /// happened inside the window, so the node fails.
    Exceeded {
        /// Restarts counted inside the window before this failure.
        restarts_in_window: u32,
    },
}

/// Counts restarts in a sliding window of virtual time.
#[derive(Clone, Debug)]
pub struct RestartTracker {
    intensity: RestartIntensity,
    /// Times (µs) of the restarts still inside the window, oldest first.
    recent_us: VecDeque<u64>,
}

impl RestartTracker {
    /// A tracker with no restarts yet.
    pub fn new(intensity: RestartIntensity) -> Self {
        Self {
            intensity,
            recent_us: VecDeque::new(),
        }
    }

    /// The limits this tracker enforces.
    pub fn intensity(&self) -> RestartIntensity {
        self.intensity
    }

    /// Restarts still inside the window as of the last call to
    /// [`on_failure`](Self::on_failure).
    pub fn restarts_in_window(&self) -> u32 {
        u32::try_from(self.recent_us.len()).unwrap_or(u32::MAX)
    }

    /// A child failed at `now_us`: restart (and count the restart) or declare
    /// the node failed. `now_us` never decreases between calls.
    pub fn on_failure(&mut self, now_us: u64) -> RestartDecision {
        if let Some(&last) = self.recent_us.back() {
            assert!(last <= now_us, "time went backwards: {last} > {now_us}");
        }
        let within_us = u64::try_from(self.intensity.within.as_micros()).unwrap_or(u64::MAX);
        // A restart at t is inside the window while now - t < within.
        while let Some(&oldest) = self.recent_us.front() {
            if now_us - oldest >= within_us {
                self.recent_us.pop_front();
            } else {
                break;
            }
        }
        let in_window = self.restarts_in_window();
        if in_window >= self.intensity.max_restarts {
            return RestartDecision::Exceeded {
                restarts_in_window: in_window,
            };
        }
        self.recent_us.push_back(now_us);
        debug_assert!(self.restarts_in_window() <= self.intensity.max_restarts);
        RestartDecision::Restart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_name_the_restarted_positions() {
        assert_eq!(RestartStrategy::OneForOne.affected(1, 4), 1..2);
        assert_eq!(RestartStrategy::OneForAll.affected(1, 4), 0..4);
        assert_eq!(RestartStrategy::RestForOne.affected(1, 4), 1..4);
        assert_eq!(RestartStrategy::RestForOne.affected(3, 4), 3..4);
        assert_eq!(RestartStrategy::RestForOne.affected(0, 1), 0..1);
    }

    #[test]
    #[should_panic(expected = "out of")]
    fn a_failed_position_outside_the_children_is_a_bug() {
        let _ = RestartStrategy::OneForOne.affected(2, 2);
    }

    #[test]
    fn intensity_allows_max_restarts_in_the_window_then_fails() {
        let mut t = RestartTracker::new(RestartIntensity {
            max_restarts: 3,
            within: Duration::from_secs(1),
        });
        assert_eq!(t.on_failure(0), RestartDecision::Restart);
        assert_eq!(t.on_failure(100), RestartDecision::Restart);
        assert_eq!(t.on_failure(999_999), RestartDecision::Restart);
        assert_eq!(
            t.on_failure(999_999),
            RestartDecision::Exceeded {
                restarts_in_window: 3
            }
        );
    }

    #[test]
    fn restarts_leave_the_window_after_within() {
        let mut t = RestartTracker::new(RestartIntensity {
            max_restarts: 2,
            within: Duration::from_secs(1),
        });
        assert_eq!(t.on_failure(0), RestartDecision::Restart);
        assert_eq!(t.on_failure(500_000), RestartDecision::Restart);
        // Exactly `within` after the first restart: it no longer counts.
        assert_eq!(t.on_failure(1_000_000), RestartDecision::Restart);
        assert_eq!(t.restarts_in_window(), 2);
        assert_eq!(
            t.on_failure(1_400_000),
            RestartDecision::Exceeded {
                restarts_in_window: 2
            }
        );
        // Long quiet period: all forgotten.
        assert_eq!(t.on_failure(10_000_000), RestartDecision::Restart);
        assert_eq!(t.restarts_in_window(), 1);
    }

    #[test]
    fn zero_max_restarts_fails_on_the_first_failure() {
        let mut t = RestartTracker::new(RestartIntensity {
            max_restarts: 0,
            within: Duration::from_secs(1),
        });
        assert_eq!(
            t.on_failure(5),
            RestartDecision::Exceeded {
                restarts_in_window: 0
            }
        );
    }

    #[test]
    #[should_panic(expected = "time went backwards")]
    fn time_going_backwards_is_a_bug() {
        let mut t = RestartTracker::new(RestartIntensity::default());
        let _ = t.on_failure(10);
        let _ = t.on_failure(9);
    }
}
