//! When a long-running kaizen does what: observe, cycle, learn. Pure (time in, tasks out), so a
//! daemon and a simulation schedule the same way.

use crate::config::ScheduleConfig;
use chrono::{DateTime, Utc};

/// A unit of scheduled work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Sample every signal.
    Observe,
    /// A full cycle (it observes first, so it replaces an `Observe` due at the same time).
    Cycle,
    /// Distil lessons.
    Learn,
    /// Write the periodic meta-review (skipped when the ledger already has one this recent).
    Review,
}

/// Tracks when each task last ran.
#[derive(Debug, Clone)]
pub struct Schedule {
    config: ScheduleConfig,
    last_observe: Option<DateTime<Utc>>,
    last_cycle: Option<DateTime<Utc>>,
    last_learn: Option<DateTime<Utc>>,
    last_review: Option<DateTime<Utc>>,
    /// No cycle before this (a warm-up).
    cycles_from: Option<DateTime<Utc>>,
}

impl Schedule {
    /// A schedule where everything is due at the first call.
    pub fn new(config: ScheduleConfig) -> Self {
        Self {
            config,
            last_observe: None,
            last_cycle: None,
            last_learn: None,
            last_review: None,
            cycles_from: None,
        }
    }

    /// No cycle is due before `at`; observing (and learning, reviewing) go on meanwhile. A
    /// warm-up: the first cycle's validations then have history to compare against. The
    /// simulator holds cycles for a scenario's `warmup`.
    ///
    /// ```
    /// use kaizen_core::schedule::{Schedule, Task};
    /// let t0: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    /// let day = chrono::Duration::days(1);
    /// let mut s = Schedule::new(Default::default()).hold_cycles_until(t0 + day);
    /// assert_eq!(s.due(t0), vec![Task::Observe, Task::Learn, Task::Review]);
    /// assert_eq!(s.due(t0 + day), vec![Task::Cycle, Task::Learn]);
    /// ```
    pub fn hold_cycles_until(mut self, at: DateTime<Utc>) -> Self {
        self.cycles_from = Some(at);
        self
    }

    /// The intervals it schedules by.
    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    fn is_due(last: Option<DateTime<Utc>>, every: crate::span::Span, now: DateTime<Utc>) -> bool {
        last.is_none_or(|l| now - l >= every.to_chrono() || now < l)
    }

    /// The tasks due at `now`, in the order to run them, marking them as run.
    ///
    /// ```
    /// use kaizen_core::schedule::{Schedule, Task};
    /// let mut s = Schedule::new(Default::default());
    /// let t0: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    /// assert_eq!(s.due(t0), vec![Task::Cycle, Task::Learn, Task::Review]);
    /// assert_eq!(s.due(t0 + chrono::Duration::minutes(1)), vec![Task::Observe]);
    /// ```
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Task> {
        let mut out = Vec::new();
        let held = self.cycles_from.is_some_and(|from| now < from);
        if !held && Self::is_due(self.last_cycle, self.config.cycle_every, now) {
            out.push(Task::Cycle);
            self.last_cycle = Some(now);
            self.last_observe = Some(now);
        } else if Self::is_due(self.last_observe, self.config.observe_every, now) {
            out.push(Task::Observe);
            self.last_observe = Some(now);
        }
        if Self::is_due(self.last_learn, self.config.learn_every, now) {
            out.push(Task::Learn);
            self.last_learn = Some(now);
        }
        if Self::is_due(self.last_review, self.config.review_every, now) {
            out.push(Task::Review);
            self.last_review = Some(now);
        }
        out
    }

    /// New intervals (a reloaded config), keeping when each task last ran: a reload does not
    /// make everything due at once.
    pub fn set_config(&mut self, config: ScheduleConfig) {
        self.config = config;
    }

    /// The next instant at which something is due.
    pub fn next_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let next = |last: Option<DateTime<Utc>>, every: crate::span::Span| {
            last.map_or(now, |l| every.after(l))
        };
        [
            next(self.last_observe, self.config.observe_every),
            next(self.last_cycle, self.config.cycle_every).max(self.cycles_from.unwrap_or(now)),
            next(self.last_learn, self.config.learn_every),
            next(self.last_review, self.config.review_every),
        ]
        .into_iter()
        .min()
        .unwrap_or(now)
        .max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_day_of_defaults() {
        let mut s = Schedule::new(ScheduleConfig::default());
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let (mut observes, mut cycles, mut learns, mut reviews) = (0, 0, 0, 0);
        for m in 0..(24 * 60) {
            for t in s.due(t0 + Duration::minutes(m)) {
                match t {
                    Task::Observe => observes += 1,
                    Task::Cycle => cycles += 1,
                    Task::Learn => learns += 1,
                    Task::Review => reviews += 1,
                }
            }
        }
        assert_eq!(cycles, 24 * 12);
        assert_eq!(observes, 24 * 60 - 24 * 12);
        assert_eq!(learns, 1);
        assert_eq!(reviews, 1, "weekly by default: once, at the start");
        assert_eq!(
            s.next_due(t0 + Duration::seconds(24 * 3600 - 30)),
            t0 + Duration::hours(24)
        );
    }

    #[test]
    fn held_cycles_start_at_the_hold_and_keep_their_cadence() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let config = ScheduleConfig {
            observe_every: crate::span::Span::minutes(5),
            cycle_every: crate::span::Span::hours(1),
            ..Default::default()
        };
        let mut s = Schedule::new(config).hold_cycles_until(t0 + Duration::hours(24));
        let mut cycles = Vec::new();
        let mut observes = 0;
        let mut now = t0;
        // Driven the way the simulator drives it: straight to the next due time.
        while now < t0 + Duration::hours(48) {
            for t in s.due(now) {
                match t {
                    Task::Cycle => cycles.push(now),
                    Task::Observe => observes += 1,
                    Task::Learn | Task::Review => {}
                }
            }
            now = s.next_due(now + Duration::seconds(1));
        }
        assert_eq!(cycles.len(), 24);
        assert_eq!(cycles[0], t0 + Duration::hours(24));
        assert!(cycles.windows(2).all(|w| w[1] - w[0] == Duration::hours(1)));
        assert_eq!(
            observes,
            2 * 288 - 24,
            "every 5 minutes, the cycles observing on theirs"
        );
    }
}
