//! The review as Markdown: readable as plain text in a terminal and rendered by issue trackers
//! (headings, tables, lists; no HTML).

use super::model::*;
use super::tables::{self, Markup, Table, drift_text};
use crate::human::{opt, pct, share};
use std::fmt::Write as _;

/// A table cell: pipes escaped, newlines folded, so one value cannot break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Markdown markup: pipes escaped, names in backticks, "needs approval" in bold.
struct Md;

impl Markup for Md {
    fn text(&self, text: &str) -> String {
        cell(text)
    }
    fn code(&self, text: &str) -> String {
        format!("`{}`", cell(text))
    }
    fn approval(&self, needs_approval: bool) -> String {
        if needs_approval {
            "**needs approval**".into()
        } else {
            "autonomous".into()
        }
    }
}

fn label(key: &str) -> String {
    key.replace('_', " ")
}

fn table(s: &mut String, t: &Table) {
    let (header, rows) = (&t.header, &t.rows);
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(
        s,
        "|{}|",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { " --- " } else { " ---: " })
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    let _ = writeln!(s);
}

/// The calibration line and reliability table of one [`CalibrationView`].
fn calibration(s: &mut String, c: &CalibrationView) {
    let _ = writeln!(
        s,
        "- **Brier** {} over {} decided ({} judged) · four periods before: {} over {} · drift: {}",
        opt(c.brier),
        c.decided,
        c.n,
        opt(c.previous_brier),
        c.previous_n,
        drift_text(&c.drift)
    );
    let _ = writeln!(
        s,
        "- **Interval coverage** {} · **bias** (median ln realised/predicted) {} · bias drift: {}",
        c.coverage.map_or_else(|| "-".into(), share),
        opt(c.bias),
        drift_text(&c.bias_drift)
    );
    let _ = writeln!(s);
    let bins = tables::reliability(c, &Md);
    if !bins.rows.is_empty() {
        table(s, &bins);
    }
}

/// Renders the review as Markdown.
pub fn render(r: &MetaReview) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# kaizen meta-review {} → {} UTC\n",
        r.period.from.format("%Y-%m-%d %H:%M"),
        r.period.to.format("%Y-%m-%d %H:%M")
    );

    let _ = writeln!(s, "## Outcomes\n");
    table(&mut s, &tables::outcomes(r, &Md));
    if !r.blocked_by.is_empty() {
        let list: Vec<String> = r
            .blocked_by
            .iter()
            .map(|g| format!("{} ×{}", g.guard, g.n))
            .collect();
        let _ = writeln!(s, "Blocked by: {}.\n", list.join(", "));
    }

    let _ = writeln!(s, "## Calibration\n");
    calibration(&mut s, &r.calibration);

    if !r.per_proposer.is_empty() {
        let _ = writeln!(s, "## Per proposer\n");
        table(&mut s, &tables::per_proposer(r, &Md));
        for c in r
            .per_proposer
            .iter()
            .filter_map(|p| p.autonomy.as_ref())
            .filter(|c| c.needs_approval)
        {
            let _ = writeln!(s, "- {}", cell(&c.to_string()));
        }
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "## Budget, freezes, escalations\n");
    let used: u64 = r.budget.iter().map(|d| d.applied).sum();
    let busiest = r.budget.iter().max_by_key(|d| d.applied);
    let _ = writeln!(
        s,
        "- **Budget**: {used} applied over {} day(s){}",
        r.budget.len(),
        busiest
            .filter(|d| d.applied > 0)
            .map(|d| format!(", busiest {} with {} of {}", d.day, d.applied, d.budget))
            .unwrap_or_default()
    );
    if r.frozen.is_empty() {
        let _ = writeln!(s, "- **Frozen areas**: none");
    }
    for f in &r.frozen {
        let _ = writeln!(
            s,
            "- **Frozen** `{}` until {}: {}",
            f.area,
            f.until.format("%Y-%m-%d %H:%M UTC"),
            f.reason
        );
    }
    if r.escalations.is_empty() {
        let _ = writeln!(s, "- **Escalations**: none");
    }
    for e in &r.escalations {
        let _ = writeln!(
            s,
            "- **Escalation** {}{}: {}",
            e.at.format("%Y-%m-%d %H:%M"),
            e.intervention
                .as_ref()
                .map(|i| format!(" {i}"))
                .unwrap_or_default(),
            e.detail
        );
    }
    let _ = writeln!(s);

    if !r.alerting.is_empty() {
        let _ = writeln!(s, "## Alerting signals\n");
        let rows: Vec<Vec<String>> = r
            .alerting
            .iter()
            .map(|a| {
                let first = a.series.first().map(|p| p.1);
                let last = a.series.last().map(|p| p.1);
                vec![
                    format!("`{}`", cell(&a.signal)),
                    share(a.alert_share),
                    a.interventions.to_string(),
                    a.applies.len().to_string(),
                    a.reverts.len().to_string(),
                    format!("{} → {} {}", opt(first), opt(last), cell(&a.unit))
                        .trim_end()
                        .to_string(),
                    match (first, last) {
                        (Some(f), Some(l)) if f != 0.0 => pct((l - f) / f.abs()),
                        _ => "-".into(),
                    },
                ]
            })
            .collect();
        let header = [
            "signal",
            "time alerting",
            "proposals",
            "applies",
            "reverts",
            "start → end",
            "change",
        ]
        .map(String::from)
        .to_vec();
        table(&mut s, &Table { header, rows });
    }

    let _ = writeln!(s, "## Blind spots\n");
    if r.blind_spots.is_empty() {
        let _ = writeln!(s, "None found.");
    }
    for b in &r.blind_spots {
        let _ = writeln!(s, "- **{}** `{}`: {}", label(&b.kind), b.subject, b.detail);
    }
    let _ = writeln!(s);

    let l = &r.lessons;
    let _ = writeln!(s, "## Lessons\n");
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(
        s,
        "- created: {}\n- strengthened: {}\n- retired: {}\n- contradicted by recent outcomes: {}\n",
        list(&l.created),
        list(&l.strengthened),
        list(&l.retired),
        list(&l.contradicted)
    );

    let _ = writeln!(s, "## Next moves\n");
    if r.next_moves.is_empty() {
        let _ = writeln!(s, "Nothing pressing.");
    }
    for (i, m) in r.next_moves.iter().enumerate() {
        let _ = writeln!(
            s,
            "{}. **{}** `{}`: {}",
            i + 1,
            label(&m.action),
            m.subject,
            m.why
        );
    }
    s
}
