//! The review as one self-contained HTML file: no network, no scripts, no external styles or
//! fonts; readable on a phone (responsive, dark-mode aware) with inline SVG charts — the
//! reliability diagram with Wilson intervals, outcomes over time, and a sparkline per alerting
//! signal with its applies and reverts marked. The markup is well-formed XML, so it can be
//! checked by parsing.

use super::model::*;
use super::tables::{self, Markup, Table, drift_text};
use crate::human::{opt, prob, share};
use std::fmt::Write as _;

/// Escapes text for element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --fg: #1d2330; --muted: #5b6475; --bg: #ffffff; --card: #f4f6fa; --line: #d5dae3;
  --good: #1a7f37; --bad: #c0392b; --warn: #b7791f; --info: #2f6fde; --grey: #8a93a5; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e9ef; --muted: #a3abbb; --bg: #12151c; --card: #1b2030; --line: #343b4d;
    --good: #4cc46a; --bad: #ff6b5b; --warn: #e6b04a; --info: #6ea1ff; --grey: #7d869a; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.35rem; margin: 0.2rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 0.6rem; border-bottom: 1px solid var(--line); }
section.card { background: var(--card); border-radius: 8px; padding: 0.6rem 0.9rem; margin: 0.6rem 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.5rem; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.88em; }
.muted { color: var(--muted); }
.needs { color: var(--bad); font-weight: 600; }
.ok { color: var(--good); }
svg { width: 100%; height: auto; display: block; }
svg#reliability { max-width: 24rem; margin: 0.4rem auto; }
th { white-space: normal; vertical-align: bottom; }
td:last-child { white-space: normal; }
svg text { fill: var(--muted); font-size: 11px; font-family: system-ui, sans-serif; }
svg .axis { stroke: var(--line); stroke-width: 1; fill: none; }
svg .diag { stroke: var(--grey); stroke-dasharray: 4 4; fill: none; }
svg .ci { stroke: var(--info); stroke-width: 2; }
svg .pt { fill: var(--info); }
svg .line { stroke: var(--info); stroke-width: 1.6; fill: none; }
svg .apply { fill: var(--good); }
svg .revert { fill: var(--bad); }
svg .validated { fill: var(--good); }
svg .no_effect { fill: var(--grey); }
svg .regressed { fill: var(--bad); }
svg .inconclusive { fill: var(--warn); }
.legend span { display: inline-block; margin-right: 0.8rem; font-size: 0.85rem; }
.sw { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 0.3em; vertical-align: -0.05em; }
ol li, ul li { margin: 0.25rem 0; }
@media (max-width: 40rem) { body { font-size: 14px; } main { padding: 0.6rem; } }
"#;

fn table(s: &mut String, t: &Table) {
    let _ = write!(s, "<div class=\"scroll\"><table><thead><tr>");
    for h in &t.header {
        let _ = write!(s, "<th>{h}</th>");
    }
    let _ = write!(s, "</tr></thead><tbody>");
    for r in &t.rows {
        let _ = write!(s, "<tr>");
        for c in r {
            // Cells come marked up (escaped, some with <code>).
            let _ = write!(s, "<td>{c}</td>");
        }
        let _ = write!(s, "</tr>");
    }
    let _ = writeln!(s, "</tbody></table></div>");
}

fn code(text: &str) -> String {
    format!("<code>{}</code>", esc(text))
}

/// HTML markup: entities escaped, names in `<code>`, autonomy as a coloured badge.
struct Html;

impl Markup for Html {
    fn text(&self, text: &str) -> String {
        esc(text)
    }
    fn code(&self, text: &str) -> String {
        code(text)
    }
    fn approval(&self, needs_approval: bool) -> String {
        if needs_approval {
            "<span class=\"needs\">needs approval</span>".into()
        } else {
            "<span class=\"ok\">autonomous</span>".into()
        }
    }
}

/// The reliability diagram: stated confidence (x) against observed hit rate (y) per bin, with
/// the 95% Wilson interval as a vertical bar and the diagonal of perfect calibration.
fn reliability_svg(c: &CalibrationView) -> String {
    let (w, h, m) = (320.0, 240.0, 34.0);
    let x = |v: f64| m + v.clamp(0.0, 1.0) * (w - 2.0 * m);
    let y = |v: f64| h - m + v.clamp(0.0, 1.0) * -(h - 2.0 * m);
    let mut s = format!(
        "<svg id=\"reliability\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Reliability diagram\"><title>Stated confidence against observed hit rate, with 95% Wilson intervals</title>"
    );
    let _ = write!(
        s,
        "<path class=\"axis\" d=\"M{m} {m} V{} H{}\"/><path class=\"diag\" d=\"M{} {} L{} {}\"/>",
        h - m,
        w - m,
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    );
    for t in [0.0, 0.5, 1.0] {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            x(t),
            h - m + 14.0,
            prob(t),
            m - 4.0,
            y(t) + 4.0,
            prob(t)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">stated confidence</text><text x=\"10\" y=\"{}\" transform=\"rotate(-90 10 {})\" text-anchor=\"middle\">observed hit rate</text>",
        w / 2.0,
        h - 4.0,
        h / 2.0,
        h / 2.0
    );
    for b in c.bins.iter().filter(|b| b.n > 0) {
        let cx = x(b.mean_confidence.unwrap_or((b.lo + b.hi) / 2.0));
        let _ = write!(
            s,
            "<line class=\"ci\" x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><circle class=\"pt\" cx=\"{cx:.1}\" cy=\"{:.1}\" r=\"{:.1}\"><title>{}–{}: {} of {} validated</title></circle>",
            y(b.wilson_lo),
            y(b.wilson_hi),
            y(b.hit_rate.unwrap_or(0.0)),
            3.0 + (b.n as f64).sqrt().min(6.0),
            prob(b.lo),
            prob(b.hi),
            b.hits,
            b.n
        );
    }
    s.push_str("</svg>");
    s
}

/// Outcomes over time: stacked bars of finalized outcomes per slice.
fn timeline_svg(slices: &[Slice]) -> String {
    let (w, h, m) = (600.0, 160.0, 24.0);
    let max = slices
        .iter()
        .map(|s| s.validated + s.no_effect + s.regressed + s.inconclusive)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = slices.len().max(1) as f64;
    let bw = (w - 2.0 * m) / n;
    let mut s = format!(
        "<svg id=\"outcomes-over-time\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Outcomes over time\"><title>Finalized outcomes per slice of the period</title><path class=\"axis\" d=\"M{m} {} H{}\"/>",
        h - m,
        w - m
    );
    for (i, sl) in slices.iter().enumerate() {
        let mut base = h - m;
        let x0 = m + i as f64 * bw + bw * 0.1;
        for (class, v) in [
            ("validated", sl.validated),
            ("no_effect", sl.no_effect),
            ("regressed", sl.regressed),
            ("inconclusive", sl.inconclusive),
        ] {
            if v == 0 {
                continue;
            }
            let bh = v as f64 / max * (h - 2.0 * m);
            base -= bh;
            let _ = write!(
                s,
                "<rect class=\"{class}\" x=\"{x0:.1}\" y=\"{base:.1}\" width=\"{:.1}\" height=\"{bh:.1}\"><title>{}: {v} {}</title></rect>",
                bw * 0.8,
                sl.from.format("%Y-%m-%d %H:%M"),
                class.replace('_', " ")
            );
        }
    }
    if let (Some(first), Some(last)) = (slices.first(), slices.last()) {
        let _ = write!(
            s,
            "<text x=\"{m}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            h - 6.0,
            first.from.format("%m-%d %H:%M"),
            w - m,
            h - 6.0,
            last.from.format("%m-%d %H:%M")
        );
    }
    s.push_str("</svg>");
    s
}

/// A sparkline of one alerting signal over the period, applies (green) and reverts (red) marked.
fn sparkline_svg(
    a: &AlertingSignal,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> String {
    let (w, h, m) = (600.0, 70.0, 8.0);
    let span = (to - from).num_milliseconds().max(1) as f64;
    let x = |t: chrono::DateTime<chrono::Utc>| {
        m + ((t - from).num_milliseconds() as f64 / span).clamp(0.0, 1.0) * (w - 2.0 * m)
    };
    let lo = a.series.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = a
        .series
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let range = if hi > lo { hi - lo } else { 1.0 };
    let y = |v: f64| h - m - ((v - lo) / range) * (h - 2.0 * m - 10.0);
    let points: Vec<String> = a
        .series
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let mut s = format!(
        "<svg class=\"sparkline\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{} over the period\"><title>{} ({}) from {} to {}</title><polyline class=\"line\" points=\"{}\"/>",
        esc(&a.signal),
        esc(&a.signal),
        esc(&a.unit),
        opt(lo.is_finite().then_some(lo)),
        opt(hi.is_finite().then_some(hi)),
        points.join(" ")
    );
    for t in &a.applies {
        let cx = x(*t);
        let _ = write!(
            s,
            "<path class=\"apply\" d=\"M{:.1} {} l5 8 h-10 z\"><title>applied {}</title></path>",
            cx,
            h - m - 8.0,
            t.format("%Y-%m-%d %H:%M")
        );
    }
    for t in &a.reverts {
        let cx = x(*t);
        let _ = write!(
            s,
            "<path class=\"revert\" d=\"M{:.1} {} l5 -8 h-10 z\"><title>reverted {}</title></path>",
            cx,
            m + 8.0,
            t.format("%Y-%m-%d %H:%M")
        );
    }
    s.push_str("</svg>");
    s
}

/// Renders the review as a self-contained HTML document.
pub fn render(r: &MetaReview) -> String {
    let mut s = String::new();
    let title = format!(
        "kaizen meta-review {} → {} UTC",
        r.period.from.format("%Y-%m-%d %H:%M"),
        r.period.to.format("%Y-%m-%d %H:%M")
    );
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><meta name=\"color-scheme\" content=\"light dark\"/><title>{}</title><style>{STYLE}</style></head><body><main>",
        esc(&title)
    );
    let _ = writeln!(s, "<h1>{}</h1>", esc(&title));

    // Next moves first: what the reader should do.
    let _ = writeln!(s, "<h2>Next moves</h2><section class=\"card\">");
    if r.next_moves.is_empty() {
        let _ = writeln!(s, "<p>Nothing pressing.</p>");
    } else {
        let _ = write!(s, "<ol>");
        for m in &r.next_moves {
            let _ = write!(
                s,
                "<li><strong>{}</strong> {}: {}</li>",
                esc(&m.action.replace('_', " ")),
                code(&m.subject),
                esc(&m.why)
            );
        }
        let _ = writeln!(s, "</ol>");
    }
    let _ = writeln!(s, "</section>");

    let _ = writeln!(s, "<h2>Outcomes</h2><section class=\"card\">");
    table(&mut s, &tables::outcomes(r, &Html));
    if !r.blocked_by.is_empty() {
        let list: Vec<String> = r
            .blocked_by
            .iter()
            .map(|g| format!("{} ×{}", esc(&g.guard), g.n))
            .collect();
        let _ = writeln!(s, "<p>Blocked by: {}.</p>", list.join(", "));
    }
    let _ = writeln!(
        s,
        "<div class=\"legend\"><span><i class=\"sw\" style=\"background:var(--good)\"></i>validated</span><span><i class=\"sw\" style=\"background:var(--grey)\"></i>no effect</span><span><i class=\"sw\" style=\"background:var(--bad)\"></i>regressed</span><span><i class=\"sw\" style=\"background:var(--warn)\"></i>inconclusive</span></div>{}",
        timeline_svg(&r.timeline)
    );
    let _ = writeln!(s, "</section>");

    let c = &r.calibration;
    let _ = writeln!(s, "<h2>Calibration</h2><section class=\"card\">");
    let _ = writeln!(
        s,
        "<p>Brier <strong>{}</strong> over {} decided ({} judged); the four periods before: {} over {}; drift: <strong>{}</strong>. Interval coverage {}; bias (median ln realised/predicted) {}, drift {}.</p>",
        opt(c.brier),
        c.decided,
        c.n,
        opt(c.previous_brier),
        c.previous_n,
        esc(&drift_text(&c.drift)),
        c.coverage.map_or_else(|| "-".into(), share),
        esc(&opt(c.bias)),
        esc(&drift_text(&c.bias_drift))
    );
    let _ = writeln!(s, "{}", reliability_svg(c));
    let bins = tables::reliability(c, &Html);
    if !bins.rows.is_empty() {
        table(&mut s, &bins);
    }
    let _ = writeln!(s, "</section>");

    if !r.per_proposer.is_empty() {
        let _ = writeln!(s, "<h2>Per proposer</h2><section class=\"card\">");
        table(&mut s, &tables::per_proposer(r, &Html));
        let _ = writeln!(s, "</section>");
    }

    if !r.alerting.is_empty() {
        let _ = writeln!(s, "<h2>Alerting signals</h2>");
        for a in &r.alerting {
            let _ = writeln!(
                s,
                "<section class=\"card\"><p>{} <span class=\"muted\">past its threshold {} of the period · {} proposal(s), {} apply(s), {} revert(s)</span></p>{}</section>",
                code(&a.signal),
                share(a.alert_share),
                a.interventions,
                a.applies.len(),
                a.reverts.len(),
                sparkline_svg(a, r.period.from, r.period.to)
            );
        }
    }

    let _ = writeln!(
        s,
        "<h2>Budget, freezes, escalations</h2><section class=\"card\"><ul>"
    );
    let used: u64 = r.budget.iter().map(|d| d.applied).sum();
    let _ = write!(s, "<li>{used} applied over {} day(s)", r.budget.len());
    if let Some(d) = r
        .budget
        .iter()
        .max_by_key(|d| d.applied)
        .filter(|d| d.applied > 0)
    {
        let _ = write!(
            s,
            "; busiest {} with {} of {}",
            esc(&d.day),
            d.applied,
            d.budget
        );
    }
    let _ = write!(s, "</li>");
    if r.frozen.is_empty() {
        let _ = write!(s, "<li>No frozen areas.</li>");
    }
    for f in &r.frozen {
        let _ = write!(
            s,
            "<li>Frozen {} until {}: {}</li>",
            code(&f.area),
            f.until.format("%Y-%m-%d %H:%M UTC"),
            esc(&f.reason)
        );
    }
    if r.escalations.is_empty() {
        let _ = write!(s, "<li>No escalations.</li>");
    }
    for e in &r.escalations {
        let _ = write!(
            s,
            "<li>Escalation {} {}: {}</li>",
            e.at.format("%Y-%m-%d %H:%M"),
            esc(e.intervention.as_deref().unwrap_or("")),
            esc(&e.detail)
        );
    }
    let _ = writeln!(s, "</ul></section>");

    let _ = writeln!(s, "<h2>Blind spots</h2><section class=\"card\">");
    if r.blind_spots.is_empty() {
        let _ = writeln!(s, "<p>None found.</p>");
    } else {
        let _ = write!(s, "<ul>");
        for b in &r.blind_spots {
            let _ = write!(
                s,
                "<li><strong>{}</strong> {}: {}</li>",
                esc(&b.kind.replace('_', " ")),
                code(&b.subject),
                esc(&b.detail)
            );
        }
        let _ = writeln!(s, "</ul>");
    }
    let _ = writeln!(s, "</section>");

    let l = &r.lessons;
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.iter().map(|i| code(i)).collect::<Vec<_>>().join(", ")
        }
    };
    let _ = writeln!(
        s,
        "<h2>Lessons</h2><section class=\"card\"><ul><li>created: {}</li><li>strengthened: {}</li><li>retired: {}</li><li>contradicted by recent outcomes: {}</li></ul></section>",
        list(&l.created),
        list(&l.strengthened),
        list(&l.retired),
        list(&l.contradicted)
    );
    let _ = writeln!(s, "</main></body></html>");
    s
}
