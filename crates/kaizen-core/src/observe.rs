//! Stage 1, observe: sources sample signals into the ledger's time series.

use crate::signal::Sample;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A source that could not produce a sample.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("source `{source_name}`: {message}")]
pub struct SourceError {
    /// The source's name (usually the signal it feeds).
    pub source_name: String,
    /// What went wrong, for a human.
    pub message: String,
}

impl SourceError {
    /// An error of `source_name` with `message`.
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// Something that can be sampled: a command, an HTTP JSON field, a Prometheus query, a simulator.
///
/// Invariants: a source returns finite values only; a missing value is an error (recorded as a
/// gap), never a zero. `now` comes from the engine's clock and is the timestamp of the samples.
#[async_trait]
pub trait Source: Send + Sync {
    /// A name for logs and errors.
    fn name(&self) -> &str;
    /// Samples every signal this source feeds, once.
    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError>;
}
