//! Each signal's newest samples, kept by the engine between reads: what the status snapshot
//! reads for every signal after every step of the runtime (the latest value and the spacings
//! its cadence is the median of). The engine sees every sample it records and every fold of
//! old samples, so it keeps them up to date itself instead of asking the ledger each time.
//!
//! # Invariants
//! - A signal's entry holds exactly what [`Ledger::newest_points`] with [`NewestPoints::KEPT`]
//!   would read now: its newest `KEPT` finite samples, oldest first (all of them if it has
//!   fewer). An entry is filled from the ledger on first use, then updated from the samples
//!   recorded through the engine, in the order the ledger applied them (a re-sample at the same
//!   instant replaces the value, as `INSERT OR REPLACE` does).
//! - Anything else that may change the samples empties the cache: a fold of old samples by
//!   retention (or a failed one), a commit by another connection to the ledger file (SQLite's
//!   `data_version` moved), and a request for another count than `KEPT` reads the ledger.

use crate::ledger::{Ledger, LedgerError, from_ms, stored_point};
use crate::signal::Sample;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};

/// One signal's newest points, oldest first.
type Points = VecDeque<(DateTime<Utc>, f64)>;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct NewestPoints {
    /// The ledger's `data_version` the entries were read or updated under.
    version: Option<i64>,
    by_signal: HashMap<String, Points>,
}

impl NewestPoints {
    /// How many points an entry keeps: what the status snapshot asks for (the latest sample and
    /// the spacings of the cadence estimate).
    pub(crate) const KEPT: usize = crate::validate::cadence::RECENT_SPACINGS + 1;

    /// The newest `n` points of `signal`, oldest first, as [`Ledger::newest_points`] reads them.
    pub(crate) fn read(
        &mut self,
        ledger: &Ledger,
        signal: &str,
        n: usize,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, LedgerError> {
        if n != Self::KEPT {
            return ledger.newest_points(signal, n);
        }
        let version = ledger.data_version()?;
        if self.version != Some(version) {
            self.by_signal.clear();
            self.version = Some(version);
        }
        if let Some(points) = self.by_signal.get(signal) {
            return Ok(points.iter().copied().collect());
        }
        let points = ledger.newest_points(signal, n)?;
        self.by_signal
            .insert(signal.to_string(), points.iter().copied().collect());
        Ok(points)
    }

    /// Folds in `samples`, just committed by this engine's ledger connection, in their order.
    pub(crate) fn recorded(&mut self, samples: &[Sample]) {
        for s in samples.iter().filter(|s| s.value.is_finite()) {
            if let Some(points) = self.by_signal.get_mut(&s.signal) {
                let (at, value) = stored_point(s);
                insert(points, from_ms(at), value, Self::KEPT);
            }
        }
    }

    /// Forgets everything (samples were deleted, or may have been).
    pub(crate) fn clear(&mut self) {
        self.by_signal.clear();
        self.version = None;
    }
}

/// Inserts a point into `points` (sorted by time, at most `kept`, all the signal's points when
/// fewer), replacing the value of one at the same instant.
fn insert(points: &mut Points, at: DateTime<Utc>, value: f64, kept: usize) {
    match points.binary_search_by(|p| p.0.cmp(&at)) {
        Ok(i) => points[i].1 = value,
        // Older than every point of a full entry: not among the newest.
        Err(0) if points.len() >= kept => {}
        Err(i) => {
            points.insert(i, (at, value));
            while points.len() > kept {
                points.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        "2026-03-01T00:00:00Z".parse().unwrap()
    }

    /// Points compared exactly: `-0.0 == 0.0` as floats, not as what a status prints.
    fn bits(points: &[(DateTime<Utc>, f64)]) -> Vec<(DateTime<Utc>, u64)> {
        points.iter().map(|&(at, v)| (at, v.to_bits())).collect()
    }

    /// Arbitrary sequences of recorded batches (out of order, repeated instants, non-finite
    /// values, signals never read, folds of old samples): the kept points always equal what
    /// the ledger reads afresh.
    #[test]
    fn kept_points_equal_a_fresh_read_after_any_sequence_of_writes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        for round in 0..40 {
            let mut ledger = Ledger::in_memory().unwrap();
            let mut kept = NewestPoints::default();
            let signals = ["a", "b", "c"];
            let mut clock = 0i64;
            for step in 0..120 {
                // Read some signals (fills their entries), as a status would.
                for s in signals.iter().take(rng.random_range(0..=3)) {
                    let got = kept.read(&ledger, s, NewestPoints::KEPT).unwrap();
                    let fresh = ledger.newest_points(s, NewestPoints::KEPT).unwrap();
                    assert_eq!(
                        bits(&got),
                        bits(&fresh),
                        "round {round} step {step} signal {s}"
                    );
                }
                if rng.random_bool(0.05) {
                    // Retention folds old samples: the engine forgets.
                    let cutoff = t0() + Duration::minutes(clock - rng.random_range(0..200));
                    ledger.fold_samples_before(cutoff, 10_000).unwrap();
                    kept.clear();
                    continue;
                }
                let mut batch = Vec::new();
                for _ in 0..rng.random_range(0..6) {
                    let signal = signals[rng.random_range(0..signals.len())];
                    // Mostly forward in time, sometimes back (a late or replayed sample),
                    // sometimes the same instant again.
                    let at = match rng.random_range(0..10) {
                        0 => clock - rng.random_range(0..100),
                        1 => clock,
                        _ => {
                            clock += rng.random_range(1..10);
                            clock
                        }
                    };
                    let value = match rng.random_range(0..20) {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        2 => -0.0,
                        3 => 0.0,
                        _ => rng.random_range(-100.0..100.0),
                    };
                    // Some off the millisecond, as a wall clock gives them.
                    let sub_ms = match rng.random_range(0..4) {
                        0 => Duration::microseconds(rng.random_range(0..1000)),
                        _ => Duration::zero(),
                    };
                    batch.push(Sample::new(
                        signal,
                        t0() + Duration::minutes(at) + sub_ms,
                        value,
                    ));
                }
                ledger.record_samples(&batch).unwrap();
                kept.recorded(&batch);
            }
            for s in signals {
                assert_eq!(
                    bits(&kept.read(&ledger, s, NewestPoints::KEPT).unwrap()),
                    bits(&ledger.newest_points(s, NewestPoints::KEPT).unwrap()),
                    "round {round}, at the end, signal {s}"
                );
            }
        }
    }

    #[test]
    fn a_commit_by_another_connection_empties_the_kept_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let mut ours = Ledger::open(&path).unwrap();
        let mut theirs = Ledger::open(&path).unwrap();
        let mut kept = NewestPoints::default();
        let batch = [Sample::new("a", t0(), 1.0)];
        ours.record_samples(&batch).unwrap();
        kept.recorded(&batch);
        assert_eq!(kept.read(&ours, "a", NewestPoints::KEPT).unwrap().len(), 1);
        theirs
            .record_samples(&[Sample::new("a", t0() + Duration::minutes(1), 2.0)])
            .unwrap();
        assert_eq!(
            kept.read(&ours, "a", NewestPoints::KEPT).unwrap(),
            vec![(t0(), 1.0), (t0() + Duration::minutes(1), 2.0)]
        );
    }
}
