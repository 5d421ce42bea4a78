//! Each read signal's recent samples, kept by the engine between cycles: what the stages read
//! again and again — the proposers' recent window every cycle, the baseline and window sizing
//! of each proposal, the daily learn's 8 days, a validation's history. Read from the ledger,
//! those were a tenth of a long simulated run (issue 12, bench 4), almost all of it the same
//! samples read again. The engine sees every sample it records and every fold of old samples,
//! so it keeps them up to date itself, as it does each signal's newest ([`super::newest`]).
//!
//! # Invariants
//! - A signal's entry holds exactly the samples the ledger holds for it at or after the entry's
//!   start, as the ledger stores them: times at millisecond precision, finite values as SQLite
//!   reads them back, one per instant, oldest first. So a read of `from..=to` with `from` at or
//!   after the start answers what [`Ledger::samples`] would read now; an earlier `from` reads
//!   the ledger and refills the entry from there.
//! - Samples recorded through the engine are folded in, in the order the ledger applied them (a
//!   re-sample at the same instant replaces the value, as `INSERT OR REPLACE` does).
//! - Anything else that may change the samples empties it: a fold of old samples by retention
//!   (or a failed one), a commit by another connection to the ledger file (SQLite's
//!   `data_version` moved).
//! - An entry is made only when the ledger holds nothing of the signal after the read's end
//!   (so filling it never reads an unbounded tail of samples stamped ahead of the clock);
//!   otherwise that read is answered from the ledger alone.
//! - It is bounded: an entry keeps [`RecentSamples::SPAN`] before the latest read's start at
//!   most (older points are dropped and its start moves up), and past
//!   [`RecentSamples::MAX_POINTS`] points in all everything is forgotten (and read again as
//!   needed) — correct whatever it holds, only slower.

use crate::ledger::{Ledger, LedgerError, from_ms, stored_point};
use crate::signal::Sample;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};

/// One signal's kept samples.
#[derive(Debug)]
struct Entry {
    /// Every sample of the signal at or after this instant (ms) is in `points`.
    start: i64,
    /// (time in ms, value), oldest first, one per instant.
    points: VecDeque<(i64, f64)>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct RecentSamples {
    /// The ledger's `data_version` the entries were read or updated under.
    version: Option<i64>,
    by_signal: HashMap<String, Entry>,
    /// Points held over all entries.
    total: usize,
}

impl RecentSamples {
    /// How far before the start of the latest read of a signal its entry keeps samples: the
    /// stages' reads (a day for the proposers, 8 days for baselines, sizing and learn, a
    /// validation's history before its apply) all start within it, so they share one entry.
    pub(crate) const SPAN: chrono::Duration = chrono::Duration::days(10);

    /// The most points kept over all signals (16 bytes each): about 20 signals of 10 days at a
    /// 1-minute cadence. More than that, and the entries are dropped and read again.
    pub(crate) const MAX_POINTS: usize = 300_000;

    /// The samples of `signal` with `from <= at <= to`, oldest first, as [`Ledger::samples`]
    /// reads them.
    pub(crate) fn read(
        &mut self,
        ledger: &Ledger,
        signal: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Sample>, LedgerError> {
        let version = ledger.data_version()?;
        if self.version != Some(version) {
            self.clear();
            self.version = Some(version);
        }
        let (lo_ms, hi_ms) = (from.timestamp_millis(), to.timestamp_millis());
        let covered = self.by_signal.get(signal).is_some_and(|e| e.start <= lo_ms);
        if !covered {
            // Samples stamped after this read's end (a source whose clock runs ahead, a cron
            // line run with a `--now` in the past) would make "everything from `from` on" a
            // read of an unbounded tail, in every process that fills an entry: then this read
            // alone is answered, and nothing is kept.
            if ledger.latest_sample(signal)?.is_some_and(|s| s.at > to) {
                return ledger.samples(signal, from, to);
            }
            // Everything from `from` on (nothing is after `to`): later reads of this signal
            // starting at or after it are answered from here.
            let points = ledger.points(signal, from, to)?;
            let points: VecDeque<(i64, f64)> = points
                .into_iter()
                .map(|(at, v)| (at.timestamp_millis(), v))
                .collect();
            let old = self.by_signal.insert(
                signal.to_string(),
                Entry {
                    start: lo_ms,
                    points,
                },
            );
            self.total = self
                .total
                .saturating_sub(old.map_or(0, |e| e.points.len()))
                .saturating_add(self.by_signal.get(signal).map_or(0, |e| e.points.len()));
        }
        let Some(entry) = self.by_signal.get_mut(signal) else {
            return ledger.samples(signal, from, to);
        };
        // Older than a span before this read's start: no stage reads that far back again soon.
        let keep_from = lo_ms.saturating_sub(Self::SPAN.num_milliseconds());
        if entry.start < keep_from {
            let cut = entry.points.partition_point(|p| p.0 < keep_from);
            entry.points.drain(..cut);
            entry.start = keep_from;
            self.total = self.total.saturating_sub(cut);
        }
        let lo = entry.points.partition_point(|p| p.0 < lo_ms);
        let hi = entry.points.partition_point(|p| p.0 <= hi_ms);
        let out = entry
            .points
            .range(lo..hi.max(lo))
            .map(|&(at, v)| Sample::new(signal, from_ms(at), v))
            .collect();
        if self.total > Self::MAX_POINTS {
            let version = self.version;
            self.clear();
            self.version = version;
        }
        Ok(out)
    }

    /// Folds in `samples`, just committed by this engine's ledger connection, in their order.
    pub(crate) fn recorded(&mut self, samples: &[Sample]) {
        for s in samples.iter().filter(|s| s.value.is_finite()) {
            if let Some(entry) = self.by_signal.get_mut(&s.signal) {
                let (at, value) = stored_point(s);
                if at < entry.start {
                    continue;
                }
                match entry.points.binary_search_by(|p| p.0.cmp(&at)) {
                    Ok(i) => entry.points[i].1 = value,
                    Err(i) => {
                        entry.points.insert(i, (at, value));
                        self.total = self.total.saturating_add(1);
                    }
                }
            }
        }
        if self.total > Self::MAX_POINTS {
            let version = self.version;
            self.clear();
            self.version = version;
        }
    }

    /// Forgets everything (samples were deleted, or may have been).
    pub(crate) fn clear(&mut self) {
        self.by_signal.clear();
        self.version = None;
        self.total = 0;
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

    /// Arbitrary sequences of recorded batches (out of order, repeated instants, sub-millisecond
    /// times, negative zeros, non-finite values, signals never read, folds of old samples) and
    /// reads of arbitrary ranges (inside, before and across what is kept, empty, reversed):
    /// every read equals what the ledger reads afresh.
    #[test]
    fn kept_samples_equal_a_fresh_read_after_any_sequence_of_writes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        for round in 0..40 {
            let mut ledger = Ledger::in_memory().unwrap();
            let mut kept = RecentSamples::default();
            let signals = ["a", "b", "c"];
            // Minutes; spans of a few days so that the kept span's trimming is exercised.
            let mut clock = 0i64;
            let minute =
                |m: i64, sub_ns: i64| t0() + Duration::minutes(m) + Duration::nanoseconds(sub_ns);
            for step in 0..150 {
                for _ in 0..rng.random_range(0..=3) {
                    let s = signals[rng.random_range(0..signals.len())];
                    let a = clock - rng.random_range(-30..20_000);
                    let b = match rng.random_range(0..4) {
                        0 => a - rng.random_range(0..100),
                        1 => i64::MAX / 4,
                        _ => a + rng.random_range(0..20_000),
                    };
                    let (from, to) = (
                        minute(a, rng.random_range(0..2_000_000)),
                        if b == i64::MAX / 4 {
                            DateTime::<Utc>::MAX_UTC
                        } else {
                            minute(b, rng.random_range(0..2_000_000))
                        },
                    );
                    let got = kept.read(&ledger, s, from, to).unwrap();
                    let fresh = ledger.samples(s, from, to).unwrap();
                    assert_eq!(got.len(), fresh.len(), "round {round} step {step} {s}");
                    for (g, f) in got.iter().zip(&fresh) {
                        assert_eq!(
                            (&g.signal, g.at, g.value.to_bits()),
                            (&f.signal, f.at, f.value.to_bits()),
                            "round {round} step {step} signal {s}"
                        );
                    }
                }
                if rng.random_bool(0.03) {
                    // Retention folds old samples: the engine forgets.
                    let cutoff = minute(clock - rng.random_range(0..20_000), 0);
                    ledger.fold_samples_before(cutoff, 10_000).unwrap();
                    kept.clear();
                    continue;
                }
                let mut batch = Vec::new();
                for _ in 0..rng.random_range(0..40) {
                    let signal = signals[rng.random_range(0..signals.len())];
                    // Mostly forward in time, sometimes back (a late or replayed sample),
                    // sometimes the same instant again; some off the millisecond.
                    let at = match rng.random_range(0..10) {
                        0 => clock - rng.random_range(0..20_000),
                        1 => clock,
                        _ => {
                            clock += rng.random_range(1..60);
                            clock
                        }
                    };
                    let sub = if rng.random_bool(0.2) {
                        rng.random_range(0..3_000_000)
                    } else {
                        0
                    };
                    let value = match rng.random_range(0..25) {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        2 => -0.0,
                        3 => 0.0,
                        4 => rng.random_range(-5..5) as f64,
                        5 => 1e300,
                        _ => rng.random_range(-100.0..100.0),
                    };
                    batch.push(Sample::new(signal, minute(at, sub), value));
                }
                ledger.record_samples(&batch).unwrap();
                kept.recorded(&batch);
            }
        }
    }

    #[test]
    fn a_commit_by_another_connection_empties_the_kept_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let mut ours = Ledger::open(&path).unwrap();
        let mut theirs = Ledger::open(&path).unwrap();
        let mut kept = RecentSamples::default();
        let end = t0() + Duration::hours(1);
        let batch = [Sample::new("a", t0(), 1.0)];
        ours.record_samples(&batch).unwrap();
        kept.recorded(&batch);
        assert_eq!(kept.read(&ours, "a", t0(), end).unwrap().len(), 1);
        theirs
            .record_samples(&[Sample::new("a", t0() + Duration::minutes(1), 2.0)])
            .unwrap();
        assert_eq!(
            kept.read(&ours, "a", t0(), end).unwrap(),
            vec![
                Sample::new("a", t0(), 1.0),
                Sample::new("a", t0() + Duration::minutes(1), 2.0)
            ]
        );
    }

    /// Samples stamped after a read's end (a `--now` in the past, a source's clock ahead) are
    /// never all read to fill an entry: the read is answered alone, and kept only once nothing
    /// lies after its end.
    #[test]
    fn samples_after_the_read_are_not_read_to_keep() {
        let mut ledger = Ledger::in_memory().unwrap();
        let mut kept = RecentSamples::default();
        let batch: Vec<Sample> = (0..1000)
            .map(|i| Sample::new("a", t0() + Duration::minutes(5 * i), i as f64))
            .collect();
        ledger.record_samples(&batch).unwrap();
        let (from, to) = (t0(), t0() + Duration::hours(1));
        let got = kept.read(&ledger, "a", from, to).unwrap();
        assert_eq!(got, ledger.samples("a", from, to).unwrap());
        assert_eq!(got.len(), 13);
        assert!(kept.by_signal.is_empty() && kept.total == 0);
        // Past the last sample: kept from `from` on, and later reads come from it.
        let (from, to) = (t0() + Duration::minutes(5 * 990), t0() + Duration::days(10));
        assert_eq!(kept.read(&ledger, "a", from, to).unwrap().len(), 10);
        assert_eq!(kept.total, 10);
    }

    /// Past the bound, everything is dropped and read again: still what the ledger holds.
    #[test]
    fn past_the_bound_the_kept_samples_are_read_again() {
        let mut ledger = Ledger::in_memory().unwrap();
        let mut kept = RecentSamples::default();
        let n = RecentSamples::MAX_POINTS + 10;
        let batch: Vec<Sample> = (0..n)
            .map(|i| Sample::new("a", t0() + Duration::seconds(i as i64), i as f64))
            .collect();
        ledger.record_samples(&batch[..10]).unwrap();
        let far = t0() + Duration::days(30);
        assert_eq!(kept.read(&ledger, "a", t0(), far).unwrap().len(), 10);
        ledger.record_samples(&batch[10..]).unwrap();
        kept.recorded(&batch[10..]);
        assert_eq!(kept.total, 0, "past the bound, nothing is kept");
        assert_eq!(
            kept.read(&ledger, "a", t0(), far).unwrap(),
            ledger.samples("a", t0(), far).unwrap()
        );
    }
}
