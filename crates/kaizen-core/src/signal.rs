//! Named signals and their samples.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which direction of a signal is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Falling is good (latency, error rate, RSS).
    Lower,
    /// Rising is good (throughput, hit rate).
    Higher,
}

impl Better {
    /// +1 when rising is good, −1 when falling is good: multiply a change by this to get "goodness".
    pub fn sign(self) -> f64 {
        match self {
            Better::Lower => -1.0,
            Better::Higher => 1.0,
        }
    }
}

impl fmt::Display for Better {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        })
    }
}

/// A named, observed quantity with its unit, good direction and alert thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Unique name, e.g. `latency_ms`.
    pub name: String,
    /// Unit for display, e.g. `ms`.
    pub unit: String,
    /// Which direction is an improvement.
    pub better: Better,
    /// Alert when the value is above this.
    pub alert_above: Option<f64>,
    /// Alert when the value is below this.
    pub alert_below: Option<f64>,
}

impl Signal {
    /// Whether `value` is past an alert threshold.
    pub fn is_alerting(&self, value: f64) -> bool {
        self.alert_above.is_some_and(|t| value > t) || self.alert_below.is_some_and(|t| value < t)
    }
}

/// One observed value of one signal at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The signal's name.
    pub signal: String,
    /// When it was observed.
    pub at: DateTime<Utc>,
    /// The value (finite; sources reject NaN and infinities).
    pub value: f64,
}

impl Sample {
    /// A sample of `signal` at `at`.
    pub fn new(signal: impl Into<String>, at: DateTime<Utc>, value: f64) -> Self {
        Self {
            signal: signal.into(),
            at,
            value,
        }
    }
}

/// Which signals' recent samples a stage reads: a proposer from its context's `recent`
/// ([`crate::propose::Proposer::signals_read`]), a distiller from its input's
/// ([`crate::learn::Distiller::signals_read`]). The engine reads only those from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignalsRead {
    /// Every configured signal (what a proposer that does not say is given).
    #[default]
    All,
    /// Only these.
    Only(std::collections::BTreeSet<String>),
}

impl SignalsRead {
    /// What either reads.
    pub fn union(self, other: SignalsRead) -> SignalsRead {
        match (self, other) {
            (SignalsRead::Only(mut a), SignalsRead::Only(b)) => {
                a.extend(b);
                SignalsRead::Only(a)
            }
            _ => SignalsRead::All,
        }
    }

    /// Whether `signal` is read.
    pub fn reads(&self, signal: &str) -> bool {
        match self {
            SignalsRead::All => true,
            SignalsRead::Only(set) => set.contains(signal),
        }
    }
}
