//! The review as Markdown: readable as plain text in a terminal and rendered by issue trackers
//! (headings, tables, lists; no HTML).

use super::model::*;
use crate::human::{opt, opt_prob, pct, prob, share};
use std::fmt::Write as _;

/// A table cell: pipes escaped, newlines folded, so one value cannot break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn label(key: &str) -> String {
    key.replace('_', " ")
}

fn table(s: &mut String, header: &[String], rows: &[Vec<String>]) {
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

fn drift_text(d: &Drift) -> String {
    match (d.direction, d.by) {
        (Direction::Unknown, _) | (_, None) => "unknown (no earlier figure)".into(),
        (Direction::Same, Some(by)) => format!("same (by {})", crate::human::sig3(by.abs())),
        (dir, Some(by)) => format!("{} by {}", dir.as_str(), crate::human::sig3(by.abs())),
    }
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
    let rows: Vec<Vec<String>> = c
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
    if !rows.is_empty() {
        table(
            s,
            &[
                "stated confidence".into(),
                "decided".into(),
                "validated".into(),
                "hit rate".into(),
                "95% Wilson".into(),
            ],
            &rows,
        );
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
    let areas: Vec<&String> = r.by_area.keys().collect();
    let mut header = vec!["outcome".to_string(), "all".to_string()];
    header.extend(areas.iter().map(|a| format!("`{}`", cell(a))));
    let rows: Vec<Vec<String>> = OUTCOME_KEYS
        .iter()
        .filter(|k| r.outcomes.get(**k).copied().unwrap_or(0) > 0 || **k == "proposed")
        .map(|k| {
            let mut row = vec![
                label(k),
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
    table(&mut s, &header, &rows);
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
        let rows: Vec<Vec<String>> = r
            .per_proposer
            .iter()
            .map(|p| {
                let o = |k: &str| p.outcomes.get(k).copied().unwrap_or(0).to_string();
                vec![
                    format!("`{}`", cell(&p.proposer)),
                    o("proposed"),
                    o("applied"),
                    o("validated"),
                    (p.outcomes.get("no_effect").copied().unwrap_or(0)
                        + p.outcomes.get("regressed").copied().unwrap_or(0))
                    .to_string(),
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
                                if c.needs_approval {
                                    "**needs approval**"
                                } else {
                                    "autonomous"
                                }
                            )
                        },
                    ),
                ]
            })
            .collect();
        table(
            &mut s,
            &[
                "proposer".into(),
                "proposed".into(),
                "applied".into(),
                "validated".into(),
                "failed".into(),
                "Brier (drift)".into(),
                "stated → calibrated, autonomy".into(),
            ],
            &rows,
        );
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
        table(
            &mut s,
            &[
                "signal".into(),
                "time alerting".into(),
                "proposals".into(),
                "applies".into(),
                "reverts".into(),
                "start → end".into(),
                "change".into(),
            ],
            &rows,
        );
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
