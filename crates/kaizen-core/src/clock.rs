//! Time, read through one seam so months of operation can be simulated in seconds.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// Where every stage reads "now" from. Nothing in kaizen calls `Utc::now()` directly.
///
/// ```
/// use kaizen_core::clock::{Clock, ManualClock};
/// let clock = ManualClock::at("2026-01-01T00:00:00Z".parse().unwrap());
/// clock.advance(chrono::Duration::minutes(5));
/// assert_eq!(clock.now().to_rfc3339(), "2026-01-01T00:05:00+00:00");
/// ```
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; cheap to clone (clones share the same instant).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// Moves the clock to `at` (backwards too: tests sometimes need that).
    pub fn set(&self, at: DateTime<Utc>) {
        match self.now.lock() {
            Ok(mut guard) => *guard = at,
            Err(poisoned) => *poisoned.into_inner() = at,
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let next = self.now() + by;
        self.set(next);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        match self.now.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}
