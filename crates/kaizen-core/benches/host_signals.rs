//! The host side of the kaizen-core benches that run the engine: an in-process source of `n`
//! signals (`signal_0000` …), one value each per tick, below any alert the benches configure.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kaizen_core::observe::{Source, SourceError};
use kaizen_core::signal::Sample;

/// A host's in-process source: the named signals, one value each per tick.
pub struct Signals(pub Vec<String>);

impl Signals {
    /// `signal_0000` … `signal_{n-1}`.
    pub fn numbered(n: usize) -> Signals {
        Signals((0..n).map(|i| format!("signal_{i:04}")).collect())
    }
}

/// The value of the `i`-th signal at `at`: 100 ± 1, slowly varying.
pub fn value(at: DateTime<Utc>, i: usize) -> f64 {
    100.0 + (at.timestamp() as f64 * 0.001 + i as f64).sin()
}

#[async_trait]
impl Source for Signals {
    fn name(&self) -> &str {
        "bench"
    }
    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        Ok(self
            .0
            .iter()
            .enumerate()
            .map(|(i, s)| Sample::new(s.as_str(), now, value(now, i)))
            .collect())
    }
}
