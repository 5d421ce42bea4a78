//! The review's tables as plain cells, built once from the model and marked up by each renderer
//! (Markdown escapes pipes and wraps names in backticks; HTML escapes entities and uses
//! `<code>`), so the two documents cannot disagree about what a table holds.

use super::model::*;
use crate::human::{opt, opt_prob, prob};

/// How a renderer marks up the pieces of a cell.
pub(super) trait Markup {
    /// Plain text, escaped for the format.
    fn text(&self, text: &str) -> String;
    /// A name (signal, area, proposer), set as code.
    fn code(&self, text: &str) -> String;
    /// Whether a proposer's changes now need a human's approval, emphasised.
    fn approval(&self, needs_approval: bool) -> String;
}

/// One table: a header and rows of cells already marked up.
pub(super) struct Table {
    /// Column titles, marked up like the cells.
    pub header: Vec<String>,
    /// One row per line of the table.
    pub rows: Vec<Vec<String>>,
}

/// A drift against the four periods before, in words.
pub(super) fn drift_text(d: &Drift) -> String {
    match (d.direction, d.by) {
        (Direction::Unknown, _) | (_, None) => "unknown (no earlier figure)".into(),
        (Direction::Same, Some(by)) => format!("same (by {})", crate::human::sig3(by.abs())),
        (dir, Some(by)) => format!("{} by {}", dir.as_str(), crate::human::sig3(by.abs())),
    }
}

/// Outcomes by status, overall and per area (statuses with none are left out, except
/// `proposed`, so the table is never empty).
pub(super) fn outcomes(r: &MetaReview, m: &dyn Markup) -> Table {
    let areas: Vec<&String> = r.by_area.keys().collect();
    let mut header = vec![m.text("outcome"), m.text("all")];
    header.extend(areas.iter().map(|a| m.code(a)));
    let rows = OUTCOME_KEYS
        .iter()
        .filter(|k| r.outcomes.get(**k).copied().unwrap_or(0) > 0 || **k == "proposed")
        .map(|k| {
            let mut row = vec![
                m.text(&k.replace('_', " ")),
                r.outcomes.get(*k).copied().unwrap_or(0).to_string(),
            ];
            row.extend(areas.iter().map(|a| {
                r.by_area
                    .get(*a)
                    .and_then(|o| o.get(*k))
                    .copied()
                    .unwrap_or(0)
                    .to_string()
            }));
            row
        })
        .collect();
    Table { header, rows }
}

/// The reliability bins that hold a decided outcome.
pub(super) fn reliability(c: &CalibrationView, m: &dyn Markup) -> Table {
    let rows = c
        .bins
        .iter()
        .filter(|b| b.n > 0)
        .map(|b| {
            vec![
                format!("{}–{}", prob(b.lo), prob(b.hi)),
                b.n.to_string(),
                b.hits.to_string(),
                opt_prob(b.hit_rate),
                format!("[{}, {}]", prob(b.wilson_lo), prob(b.wilson_hi)),
            ]
        })
        .collect();
    Table {
        header: [
            "stated confidence",
            "decided",
            "validated",
            "hit rate",
            "95% Wilson",
        ]
        .map(|h| m.text(h))
        .to_vec(),
        rows,
    }
}

/// Each proposer's outcomes, Brier score and autonomy.
pub(super) fn per_proposer(r: &MetaReview, m: &dyn Markup) -> Table {
    let rows = r
        .per_proposer
        .iter()
        .map(|p| {
            let o = |k: &str| p.outcomes.get(k).copied().unwrap_or(0);
            vec![
                m.code(&p.proposer),
                o("proposed").to_string(),
                o("applied").to_string(),
                o("validated").to_string(),
                o("no_effect").saturating_add(o("regressed")).to_string(),
                match p.calibration.drift.direction {
                    Direction::Unknown => opt(p.calibration.brier),
                    d => format!("{} ({})", opt(p.calibration.brier), d.as_str()),
                },
                p.autonomy.as_ref().map_or_else(
                    || "-".into(),
                    |c| {
                        format!(
                            "{} → {} ({}/{}) {}",
                            prob(c.stated),
                            prob(c.calibrated),
                            c.hits,
                            c.n,
                            m.approval(c.needs_approval)
                        )
                    },
                ),
            ]
        })
        .collect();
    Table {
        header: [
            "proposer",
            "proposed",
            "applied",
            "validated",
            "failed",
            "Brier (drift)",
            "stated → calibrated, autonomy",
        ]
        .map(|h| m.text(h))
        .to_vec(),
        rows,
    }
}
