//! The meta-review as data: the documented, stable JSON shape of `kaizen review --format json`
//! (see `docs/review-format.md`). Markdown and HTML are rendered from these types only.

use crate::calibrate::Calibration;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Version of the JSON shape; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// The outcome keys every `outcomes` map holds (zero counts included), in print order.
pub const OUTCOME_KEYS: [&str; 12] = [
    "proposed",
    "applied",
    "validated",
    "no_effect",
    "regressed",
    "inconclusive",
    "reverted",
    "blocked",
    "backlog",
    "shadowed",
    "awaiting_approval",
    "suppressed_repeats",
];

/// Outcome name → count.
pub type Outcomes = BTreeMap<String, u64>;

/// An `outcomes` map with every key of [`OUTCOME_KEYS`] at zero.
pub fn empty_outcomes() -> Outcomes {
    OUTCOME_KEYS.iter().map(|k| (k.to_string(), 0)).collect()
}

/// The reviewed period, `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
}

/// How a figure moved against the four periods before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Improved by more than the noise margin.
    Better,
    /// Got worse by more than the noise margin.
    Worse,
    /// Within the noise margin.
    Same,
    /// One side has no figure.
    Unknown,
}

impl Direction {
    /// The word printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Better => "better",
            Direction::Worse => "worse",
            Direction::Same => "same",
            Direction::Unknown => "unknown",
        }
    }
}

/// A drift: direction and signed difference (this period − the four before).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drift {
    /// Better, worse, same or unknown.
    pub direction: Direction,
    /// This period's figure minus the previous four periods'.
    pub by: Option<f64>,
}

/// Brier differences within this are "same": a week of ~20 predictions is that noisy.
pub const BRIER_SAME_WITHIN: f64 = 0.02;

impl Drift {
    /// The drift of a lower-is-better figure.
    pub fn lower_better(now: Option<f64>, before: Option<f64>, same_within: f64) -> Drift {
        match (now, before) {
            (Some(a), Some(b)) => {
                let by = a - b;
                let direction = if by.abs() <= same_within {
                    Direction::Same
                } else if by < 0.0 {
                    Direction::Better
                } else {
                    Direction::Worse
                };
                Drift {
                    direction,
                    by: Some(by),
                }
            }
            _ => Drift {
                direction: Direction::Unknown,
                by: None,
            },
        }
    }
}

/// One reliability bin: predictions whose stated confidence fell in `[lo, hi)` (the last bin
/// includes 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Decided predictions in the bin.
    pub n: usize,
    /// Of which validated.
    pub hits: usize,
    /// Observed hit rate (`None` when empty).
    pub hit_rate: Option<f64>,
    /// Mean stated confidence in the bin.
    pub mean_confidence: Option<f64>,
    /// Lower end of the 95% Wilson interval of the hit rate.
    pub wilson_lo: f64,
    /// Upper end of the 95% Wilson interval.
    pub wilson_hi: f64,
}

/// Calibration of one set of predictions against the four periods before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationView {
    /// Predictions judged (finalized after being applied).
    pub n: usize,
    /// Of which decided (validated, no effect or regressed).
    pub decided: usize,
    /// Brier score (0 perfect, 0.25 = always saying 50%).
    pub brier: Option<f64>,
    /// Reliability bins (5).
    pub bins: Vec<Bin>,
    /// Share of verdict intervals that contained the predicted change.
    pub coverage: Option<f64>,
    /// Median ln(realised / predicted): 0 unbiased, −0.69 = effects half the predicted size.
    pub bias: Option<f64>,
    /// Brier score of the four periods before.
    pub previous_brier: Option<f64>,
    /// Decided predictions in the four periods before.
    pub previous_n: usize,
    /// Bias of the four periods before.
    pub previous_bias: Option<f64>,
    /// Brier drift (lower is better; within ±0.02 is "same").
    pub drift: Drift,
    /// Bias drift (closer to 0 is better).
    pub bias_drift: Drift,
}

/// One proposer (a rule, the LLM): its outcomes, calibration and autonomy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProposerReview {
    /// The proposer key (`rules:more-workers`, `llm`).
    pub proposer: String,
    /// Its outcomes this period.
    pub outcomes: Outcomes,
    /// Its calibration this period against the four before.
    pub calibration: CalibrationView,
    /// Its calibrated confidence from its whole finalized history up to the period's end.
    pub autonomy: Option<Calibration>,
}

/// A guard and how often it blocked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardCount {
    /// The guard.
    pub guard: String,
    /// Blocks in the period.
    pub n: usize,
}

/// Applies on one UTC day of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetDay {
    /// The day (`2026-01-05`).
    pub day: String,
    /// Changes applied that day.
    pub applied: u64,
    /// The daily budget.
    pub budget: u32,
}

/// A frozen area.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frozen {
    /// The area.
    pub area: String,
    /// When the freeze lifts.
    pub until: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

/// An escalation recorded in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Escalation {
    /// When.
    pub at: DateTime<Utc>,
    /// The intervention, if any.
    pub intervention: Option<String>,
    /// What needs a human.
    pub detail: String,
}

/// A signal that spent time past its alert threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertingSignal {
    /// The signal.
    pub signal: String,
    /// Its unit.
    pub unit: String,
    /// Share of its samples in the period past a threshold.
    pub alert_share: f64,
    /// Interventions in the period that predicted a move of this signal.
    pub interventions: usize,
    /// The signal over the period, downsampled to at most 96 bucket means `[at, value]`.
    pub series: Vec<(DateTime<Utc>, f64)>,
    /// When changes predicting a move of this signal were applied.
    pub applies: Vec<DateTime<Utc>>,
    /// When such changes were reverted.
    pub reverts: Vec<DateTime<Utc>>,
}

/// Outcomes finalized in one slice of the period (for the outcomes-over-time chart).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    /// Slice start.
    pub from: DateTime<Utc>,
    /// Applied in the slice.
    pub applied: u64,
    /// Finalized validated.
    pub validated: u64,
    /// Finalized no effect.
    pub no_effect: u64,
    /// Finalized regressed.
    pub regressed: u64,
    /// Finalized inconclusive.
    pub inconclusive: u64,
}

/// A blind spot: something the loop is not seeing or not handling.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlindSpot {
    /// `unanswered_alert`, `repeated_no_effect`, `mostly_blocked`, `source_gaps`, `frozen`,
    /// `calibration_worse`, `rejected_proposals`, `proposer_errors`.
    pub kind: String,
    /// The signal, area, proposer or source concerned.
    pub subject: String,
    /// The numbers behind it.
    pub detail: String,
}

/// A next move worth making, most valuable first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextMove {
    /// `resolve_escalation`, `write_rule`, `unfreeze_area`, `build_canary`, `fix_source`,
    /// `investigate_area`, `revise_rule`, `review_autonomy`, `recalibrate`.
    pub action: String,
    /// The area, signal, rule or source it concerns.
    pub subject: String,
    /// Why, with the numbers.
    pub why: String,
}

/// Lessons changed in the period, by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LessonActivity {
    /// Created.
    pub created: Vec<String>,
    /// Strengthened (a new version with more evidence).
    pub strengthened: Vec<String>,
    /// Retired.
    pub retired: Vec<String>,
    /// Cited by changes that did not work in the period (their advice is in doubt).
    pub contradicted: Vec<String>,
}

/// The meta-review of one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetaReview {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The period.
    pub period: Period,
    /// What happened (see [`OUTCOME_KEYS`]).
    pub outcomes: Outcomes,
    /// Outcomes by area.
    pub by_area: BTreeMap<String, Outcomes>,
    /// Guards by how often they blocked.
    pub blocked_by: Vec<GuardCount>,
    /// Applies per day against the daily budget.
    pub budget: Vec<BudgetDay>,
    /// Areas frozen at the period's end.
    pub frozen: Vec<Frozen>,
    /// Escalations recorded in the period.
    pub escalations: Vec<Escalation>,
    /// Calibration overall.
    pub calibration: CalibrationView,
    /// Per proposer, in key order.
    pub per_proposer: Vec<ProposerReview>,
    /// Signals that alerted.
    pub alerting: Vec<AlertingSignal>,
    /// Outcomes over time.
    pub timeline: Vec<Slice>,
    /// Event kinds that signal trouble, counted.
    pub trouble: BTreeMap<String, usize>,
    /// Blind spots.
    pub blind_spots: Vec<BlindSpot>,
    /// Next moves, ranked.
    pub next_moves: Vec<NextMove>,
    /// Lesson changes.
    pub lessons: LessonActivity,
}
