//! A cheap virtual "now" for code running in a simulation.
//!
//! Under tokio's paused clock, [`Instant::now`] locks the clock and adds
//! its offset to a base instant (some 60 instructions), and a simulation
//! reads it on every message sent, every delivery and every client
//! operation. Yet the paused clock only moves while the runtime parks: it
//! jumps to the next timer when every task is idle, and the runtime always
//! parks through its park hooks. So [`block_on_paused`] installs hooks that
//! forget the remembered instant around every park, and [`now`] reads the
//! clock once per wake-up and then answers from a thread-local cell.
//!
//! Outside [`block_on_paused`] (another runtime, real time, no runtime)
//! [`now`] is exactly [`Instant::now`]. Debug builds check every
//! remembered answer against the clock.
//!
//! Only code that never calls `tokio::time::advance` itself may rely on it
//! inside a simulation (no simulation code does: time moves by sleeping).
//!
//! [`block_on_paused`]: super::block_on_paused

use std::cell::Cell;
use tokio::time::Instant;

/// What this thread's cache holds.
#[derive(Clone, Copy)]
enum Cached {
    /// Not in a [`block_on_paused`](super::block_on_paused) runtime: read
    /// the clock every time.
    Off,
    /// The clock may have moved since it was last read.
    Unknown,
    /// The clock's reading since the last park.
    At(Instant),
}

thread_local! {
    static CACHED: Cell<Cached> = const { Cell::new(Cached::Off) };
}

/// The current instant of tokio's clock: the same value as
/// [`Instant::now`], read from the clock at most once between two parks of
/// a simulation's runtime.
#[inline]
pub fn now() -> Instant {
    CACHED.with(|cached| match cached.get() {
        Cached::At(at) => {
            debug_assert_eq!(at, Instant::now(), "the virtual clock moved unseen");
            at
        }
        Cached::Unknown => {
            let at = Instant::now();
            cached.set(Cached::At(at));
            at
        }
        Cached::Off => Instant::now(),
    })
}

/// Whole microseconds from `origin` to `now` (0 if `now` is earlier),
/// saturating at `u64::MAX`.
pub fn micros_between(origin: Instant, now: Instant) -> u64 {
    let elapsed = now.saturating_duration_since(origin);
    elapsed
        .as_secs()
        .checked_mul(1_000_000)
        .and_then(|us| us.checked_add(u64::from(elapsed.subsec_micros())))
        .unwrap_or(u64::MAX)
}

/// Whole microseconds from `origin` to [`now`].
pub fn micros_since(origin: Instant) -> u64 {
    micros_between(origin, now())
}

/// [`micros_since`] through a one-entry cache of the last instant stamped:
/// in a simulation many steps run at one virtual instant, and they then
/// skip the subtraction and conversion. `last` belongs to the caller (one
/// per time base).
pub fn micros_since_cached(origin: Instant, last: &mut Option<(Instant, u64)>) -> u64 {
    let now = now();
    if let Some((at, us)) = *last {
        if at == now {
            return us;
        }
    }
    let us = micros_between(origin, now);
    *last = Some((now, us));
    us
}

/// Forgets the remembered instant: the clock may move from here on (called
/// by the runtime's park hooks).
pub(crate) fn forget() {
    CACHED.with(|cached| {
        if !matches!(cached.get(), Cached::Off) {
            cached.set(Cached::Unknown);
        }
    });
}

/// Turns the cache on for this thread while alive (and back to what it
/// was, with nothing remembered, when dropped).
pub(crate) struct Enabled {
    was_on: bool,
}

impl Enabled {
    /// Enables the cache; the caller's runtime must call [`forget`] around
    /// every park.
    pub(crate) fn new() -> Self {
        let was = CACHED.with(|cached| cached.replace(Cached::Unknown));
        Self {
            was_on: !matches!(was, Cached::Off),
        }
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        let state = if self.was_on {
            Cached::Unknown
        } else {
            Cached::Off
        };
        CACHED.with(|cached| cached.set(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Duration;

    /// Inside a simulation the cached instant follows the paused clock
    /// across sleeps (each one parks the runtime), and outside it the
    /// clock is read directly.
    #[test]
    fn cached_now_follows_the_paused_clock() {
        assert!(matches!(CACHED.with(Cell::get), Cached::Off));
        let seen = super::super::block_on_paused(async {
            assert!(!matches!(CACHED.with(Cell::get), Cached::Off));
            let start = now();
            assert_eq!(start, Instant::now());
            assert_eq!(now(), start);
            let mut seen = Vec::new();
            for ms in [1, 5, 20] {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let at = now();
                assert_eq!(at, Instant::now());
                seen.push(at.duration_since(start));
            }
            seen
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                Duration::from_millis(1),
                Duration::from_millis(6),
                Duration::from_millis(26)
            ]
        );
        assert!(matches!(CACHED.with(Cell::get), Cached::Off));
    }

    /// Stamps count whole microseconds (never negative, saturating); the
    /// cached stamp of a repeated instant is reused and a new instant is
    /// computed afresh and cached.
    #[test]
    fn stamps_count_whole_microseconds_and_reuse_the_last_instant() {
        let origin = Instant::now();
        let later = origin + Duration::new(3, 456_789);
        assert_eq!(micros_between(origin, later), 3_000_456);
        assert_eq!(micros_between(later, origin), 0);
        assert_eq!(micros_between(origin, origin), 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let origin = Instant::now();
            tokio::time::advance(Duration::from_micros(2_500)).await;
            let mut last = None;
            assert_eq!(micros_since_cached(origin, &mut last), 2_500);
            assert_eq!(last, Some((Instant::now(), 2_500)));
            // A (deliberately wrong) cached stamp for this instant is reused.
            last = Some((Instant::now(), 7));
            assert_eq!(micros_since_cached(origin, &mut last), 7);
            tokio::time::advance(Duration::from_micros(1)).await;
            assert_eq!(micros_since_cached(origin, &mut last), 2_501);
            assert_eq!(last, Some((Instant::now(), 2_501)));
            assert_eq!(micros_since(origin), 2_501);
        });
    }
}
