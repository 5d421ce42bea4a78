//! The prompt: "filter first, then ask". Only alerting signals (with their recent trend), the
//! lessons relevant to them, recent interventions with outcomes, freezes and budget, the
//! allow-list and the exact output schema. Deterministic given the same [`ProposeContext`]
//! and bounded by `max_prompt_tokens` (≈ 4 characters per token): when too long, the
//! lowest-priority parts are dropped first and the prompt says what was left out.

use super::client::Message;
use super::schema::{diagnosis_schema, output_schema, output_schema_for};
use chrono::{DateTime, Duration, Utc};
use kaizen_core::config::LlmConfig;
use kaizen_core::intervention::Intervention;
use kaizen_core::lesson::{Lesson, LessonStatus};
use kaizen_core::propose::ProposeContext;
use kaizen_core::signal::Signal;
use kaizen_core::tunables::KnobState;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Approximate characters per token used for the size bound.
pub const CHARS_PER_TOKEN: usize = 4;
/// Most recent interventions shown.
pub const MAX_INTERVENTIONS: usize = 10;
/// Most freezes shown.
const MAX_FREEZES: usize = 20;
/// Longest lesson or intervention text field shown.
const FIELD: usize = 200;

/// A built prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The system message.
    pub system: String,
    /// The user message.
    pub user: String,
    /// The alerting signals it is about (by name, sorted).
    pub alerting: Vec<String>,
    /// What was left out to fit the size bound (e.g. "2 lessons"), empty when nothing was.
    pub omitted: Vec<String>,
}

impl Prompt {
    /// As chat messages.
    pub fn messages(&self) -> Vec<Message> {
        vec![Message::system(&self.system), Message::user(&self.user)]
    }

    /// Its approximate size in tokens.
    pub fn approx_tokens(&self) -> usize {
        (self.system.len() + self.user.len()).div_ceil(CHARS_PER_TOKEN)
    }
}

/// Min/median/max/last of a signal over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Samples in the window.
    pub n: usize,
    /// Smallest value.
    pub min: f64,
    /// Median value.
    pub median: f64,
    /// Largest value.
    pub max: f64,
    /// Latest value.
    pub last: f64,
}

/// The trend of `signal` over the `window` before `ctx.now`, if it has samples there.
pub fn trend(ctx: &ProposeContext, signal: &str, window: Duration) -> Option<Trend> {
    let from = ctx.now - window;
    let vals: Vec<f64> = ctx
        .recent
        .get(signal)?
        .iter()
        .filter(|s| s.at > from && s.at <= ctx.now && s.value.is_finite())
        .map(|s| s.value)
        .collect();
    let last = *vals.last()?;
    let mut sorted = vals.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some(Trend {
        n,
        min: sorted[0],
        median,
        max: sorted[n - 1],
        last,
    })
}

/// The signals whose latest sample is past an alert threshold, sorted by name.
pub fn alerting_signals(ctx: &ProposeContext) -> Vec<&Signal> {
    let mut v: Vec<&Signal> = ctx
        .signals
        .iter()
        .filter(|s| ctx.latest(&s.name).is_some_and(|x| s.is_alerting(x.value)))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v.dedup_by(|a, b| a.name == b.name);
    v
}

/// A number printed compactly and deterministically.
pub(crate) fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

fn cut(s: &str, max: usize) -> String {
    super::excerpt(s, max)
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn signal_block(ctx: &ProposeContext, s: &Signal) -> String {
    let mut out = String::new();
    let last = ctx.latest(&s.name).map(|x| x.value).unwrap_or(f64::NAN);
    let mut thresholds = Vec::new();
    if let Some(a) = s.alert_above {
        thresholds.push(format!("alert above {}", num(a)));
    }
    if let Some(b) = s.alert_below {
        thresholds.push(format!("alert below {}", num(b)));
    }
    let _ = write!(
        out,
        "- {} = {} {} ({}; {} is better)",
        s.name,
        num(last),
        s.unit,
        thresholds.join(", "),
        s.better
    );
    for (label, w) in [
        ("last hour", Duration::hours(1)),
        ("last day", Duration::days(1)),
    ] {
        if let Some(t) = trend(ctx, &s.name, w) {
            let _ = write!(
                out,
                "\n  {label}: n={} min={} median={} max={} last={}",
                t.n,
                num(t.min),
                num(t.median),
                num(t.max),
                num(t.last)
            );
        }
    }
    out
}

fn lesson_line(l: &Lesson) -> String {
    let mut scope = format!("area={}", l.scope.area);
    for (k, v) in [
        ("signal", &l.scope.signal),
        ("kind", &l.scope.kind),
        ("file", &l.scope.file),
    ] {
        if let Some(v) = v {
            let _ = write!(scope, ", {k}={v}");
        }
    }
    format!(
        "- {} [{scope}] when: {} | prefer: {} | because: {}",
        l.id,
        cut(&l.when, FIELD),
        cut(&l.prefer, FIELD),
        cut(&l.because, FIELD)
    )
}

fn intervention_line(i: &Intervention) -> String {
    let c = &i.candidate;
    let edits: Vec<String> = c.change.iter().map(|e| cut(&e.to_string(), 100)).collect();
    format!(
        "- {} area={} status={} outcome={}: {:?} — {}; predicted {}; reason: {}",
        i.id,
        c.area,
        i.status,
        i.outcome.map(|o| o.as_str()).unwrap_or("none"),
        cut(&c.title, 100),
        edits.join(", "),
        c.prediction,
        cut(&i.reason, FIELD)
    )
}

/// The lessons worth showing for `alerting`: relevant ones first (signal match, then area match),
/// then the other active ones. Returns (relevant, other), each in a stable order.
fn ranked_lessons<'a>(
    ctx: &'a ProposeContext,
    alerting: &[&Signal],
) -> (Vec<&'a Lesson>, Vec<&'a Lesson>) {
    let names: BTreeSet<&str> = alerting.iter().map(|s| s.name.as_str()).collect();
    let mut areas: BTreeSet<&str> = ctx
        .interventions
        .iter()
        .filter(|i| names.contains(i.candidate.prediction.signal.as_str()))
        .map(|i| i.candidate.area.as_str())
        .collect();
    for l in &ctx.lessons {
        if l.scope.signal.as_deref().is_some_and(|s| names.contains(s)) {
            areas.insert(l.scope.area.as_str());
        }
    }
    let mut active: Vec<&Lesson> = ctx
        .lessons
        .iter()
        .filter(|l| l.status == LessonStatus::Active)
        .collect();
    active.sort_by(|a, b| a.id.cmp(&b.id));
    active.dedup_by(|a, b| a.id == b.id);
    let rank = |l: &Lesson| -> u8 {
        if l.scope.signal.as_deref().is_some_and(|s| names.contains(s)) {
            0
        } else if areas.contains(l.scope.area.as_str()) {
            1
        } else {
            2
        }
    };
    let mut relevant: Vec<&Lesson> = active.iter().copied().filter(|l| rank(l) < 2).collect();
    relevant.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.id.cmp(&b.id)));
    let other = active.into_iter().filter(|l| rank(l) == 2).collect();
    (relevant, other)
}

const SYSTEM: &str = "You are the proposer of kaizen, a tool that improves a running system safely. \
You suggest small, reversible configuration changes that should bring alerting signals back to normal. \
You never execute anything: every suggestion is validated, checked by guards, applied as one git commit \
and measured; if its prediction fails it is reverted. Rules:\n\
1. Edit only files matching the allow-list. Never touch .git, secrets, keys or kaizen's own files.\n\
2. Each candidate predicts a numeric change of ONE listed signal within a time window, \
e.g. {\"signal\": \"latency_ms\", \"change\": \"-20%\", \"within\": \"30m\"} \
(change: \"-20%\", \"+5\", \"below 1500\" or \"above 0.9\"; within: 30m, 2h, 1d).\n\
3. Each candidate gives a rollback (usually \"revert\").\n\
4. For every lesson listed that shares the candidate's area, signal or file: put its id in `cites` \
if you follow it, or in `argues_against` with a concrete reason if you do not. Use only listed lesson ids.\n\
5. Keep every text short. Answer with ONE JSON object matching the schema and nothing else. \
If no change is sensible, answer {\"candidates\": []}.";

const DIAGNOSE_SYSTEM: &str = "You are the diagnostician of kaizen, a tool that watches a running system. \
Given the alerting signals and the recent decisions, rank the most likely root causes. \
This is a diagnosis, not an action: do not propose changes. For each hypothesis give the evidence \
from the data shown and the next check a human should make. Keep every text short. \
Answer with ONE JSON object matching the schema and nothing else.";

/// A droppable group of prompt lines: (name for the omission note, lines, lines never dropped).
type Group<'a> = (&'a str, Vec<String>, usize);

/// Renders sections, dropping the lowest-priority items until the text fits `budget` characters.
/// `groups` are in drop order (first group dropped first, each from its end); `min_keep` of each
/// group are never dropped.
fn fit(
    budget: usize,
    groups: &mut [Group<'_>],
    render: &dyn Fn(&[Group<'_>], &[String]) -> String,
) -> (String, Vec<String>) {
    let originals: Vec<usize> = groups.iter().map(|g| g.1.len()).collect();
    loop {
        let omitted: Vec<String> = groups
            .iter()
            .zip(&originals)
            .filter(|(g, n)| g.1.len() < **n)
            .map(|(g, n)| format!("{} {}", n - g.1.len(), g.0))
            .collect();
        let text = render(groups, &omitted);
        if text.len() <= budget {
            return (text, omitted);
        }
        match groups.iter_mut().find(|g| g.1.len() > g.2) {
            Some(g) => {
                g.1.pop();
            }
            None => return (text, omitted),
        }
    }
}

/// The proposer's prompt for `ctx` under `config` (allow-list, candidate count, size bound).
pub fn build_prompt(ctx: &ProposeContext, config: &LlmConfig) -> Prompt {
    build_prompt_with(ctx, config, &[])
}

/// [`build_prompt`] with declared tunables: the prompt lists each knob with its current value,
/// bounds and step (never dropped to fit), edits name knobs, and the schema shown is
/// [`output_schema_for`].
pub fn build_prompt_with(ctx: &ProposeContext, config: &LlmConfig, knobs: &[KnobState]) -> Prompt {
    let alerting = alerting_signals(ctx);
    let (relevant, other) = ranked_lessons(ctx, &alerting);
    let schema = if knobs.is_empty() {
        output_schema(config.max_candidates)
    } else {
        output_schema_for(config.max_candidates, knobs)
    };
    let knob_lines: Vec<String> = knobs.iter().map(|k| format!("- {}", k.line())).collect();
    let schema_text = serde_json::to_string(&schema).unwrap_or_default();
    let signal_names: Vec<&str> = {
        let mut v: Vec<&str> = ctx.signals.iter().map(|s| s.name.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut freezes: Vec<String> = ctx
        .freezes
        .iter()
        .map(|f| {
            format!(
                "- {} until {} ({})",
                f.area,
                fmt_time(f.until),
                cut(&f.reason, FIELD)
            )
        })
        .collect();
    freezes.sort();
    freezes.truncate(MAX_FREEZES);
    let mut groups: Vec<Group<'_>> = vec![
        (
            "other lessons",
            other.iter().map(|l| lesson_line(l)).collect(),
            0,
        ),
        (
            "recent interventions",
            ctx.interventions
                .iter()
                .take(MAX_INTERVENTIONS)
                .map(intervention_line)
                .collect(),
            0,
        ),
        (
            "relevant lessons",
            relevant.iter().map(|l| lesson_line(l)).collect(),
            0,
        ),
        (
            "alerting signals",
            alerting.iter().map(|s| signal_block(ctx, s)).collect(),
            1,
        ),
    ];
    let max_candidates = config
        .max_candidates
        .clamp(1, super::schema::MAX_CANDIDATES_CAP);
    let may_change = config.may_change.clone();
    let now = fmt_time(ctx.now);
    let budget_left = ctx.budget_left;
    let render = |g: &[Group<'_>], omitted: &[String]| -> String {
        let mut u = String::new();
        let _ = writeln!(u, "Now: {now}\n");
        let _ = writeln!(u, "## Alerting signals (latest value past its threshold)");
        for line in &g[3].1 {
            let _ = writeln!(u, "{line}");
        }
        let _ = writeln!(
            u,
            "\nKnown signals (use one of these in `predict.signal`): {}",
            signal_names.join(", ")
        );
        let _ = writeln!(
            u,
            "\n## Lessons relevant to these signals (cite or argue against)"
        );
        if g[2].1.is_empty() && g[0].1.is_empty() {
            let _ = writeln!(u, "(none)");
        }
        for line in &g[2].1 {
            let _ = writeln!(u, "{line}");
        }
        if !g[0].1.is_empty() {
            let _ = writeln!(
                u,
                "\n## Other active lessons (cite or argue against if your candidate shares their area, signal or file)"
            );
            for line in &g[0].1 {
                let _ = writeln!(u, "{line}");
            }
        }
        let _ = writeln!(u, "\n## Recent interventions, newest first");
        if g[1].1.is_empty() {
            let _ = writeln!(u, "(none)");
        }
        for line in &g[1].1 {
            let _ = writeln!(u, "{line}");
        }
        if !knob_lines.is_empty() {
            let _ = writeln!(
                u,
                "\n## Tunables: the only settings you may change (name = value now (type, bounds, step))"
            );
            for line in &knob_lines {
                let _ = writeln!(u, "{line}");
            }
        }
        let _ = writeln!(u, "\n## Constraints");
        let _ = writeln!(
            u,
            "- Files you may change (globs): {}",
            may_change.join(", ")
        );
        let _ = writeln!(
            u,
            "- Interventions the daily budget still allows: {budget_left}"
        );
        if freezes.is_empty() {
            let _ = writeln!(u, "- Frozen areas: none");
        } else {
            let _ = writeln!(u, "- Frozen areas (do not propose changes there):");
            for f in &freezes {
                let _ = writeln!(u, "  {f}");
            }
        }
        if !omitted.is_empty() {
            let _ = writeln!(
                u,
                "\n(Omitted to fit the prompt size: {}.)",
                omitted.join(", ")
            );
        }
        let _ = writeln!(u, "\n## Answer");
        match knobs.iter().find(|k| k.changeable) {
            Some(k) => {
                let _ = writeln!(
                    u,
                    "Propose at most {max_candidates} candidate(s). An edit is {{\"knob\": \"{}\", \"value\": <new value>}}, naming one of the tunables above; stay within its bounds and step.",
                    k.knob.name
                );
            }
            None => {
                let _ = writeln!(
                    u,
                    "Propose at most {max_candidates} candidate(s). An edit is {{\"config_set\": {{\"file\": \"config/app.yaml\", \"key\": \"cache.size_mb\", \"value\": 256}}}} or {{\"file_write\": {{\"file\": \"...\", \"content\": \"...\"}}}}."
                );
            }
        }
        let _ = writeln!(
            u,
            "Answer with one JSON object matching this JSON schema:\n{schema_text}"
        );
        u
    };
    let budget = (config.max_prompt_tokens as usize)
        .saturating_mul(CHARS_PER_TOKEN)
        .saturating_sub(SYSTEM.len());
    let (user, omitted) = fit(budget, &mut groups, &render);
    Prompt {
        system: SYSTEM.to_string(),
        user,
        alerting: alerting.iter().map(|s| s.name.clone()).collect(),
        omitted,
    }
}

/// The diagnosis prompt: only the alerting signals and recent decisions, bounded like
/// [`build_prompt`].
pub fn build_diagnosis_prompt(ctx: &ProposeContext, max_prompt_tokens: u32) -> Prompt {
    let alerting = alerting_signals(ctx);
    let schema_text = serde_json::to_string(&diagnosis_schema()).unwrap_or_default();
    let mut groups: Vec<Group<'_>> = vec![
        (
            "recent decisions",
            ctx.interventions
                .iter()
                .take(MAX_INTERVENTIONS)
                .map(intervention_line)
                .collect(),
            0,
        ),
        (
            "alerting signals",
            alerting.iter().map(|s| signal_block(ctx, s)).collect(),
            1,
        ),
    ];
    let now = fmt_time(ctx.now);
    let render = |g: &[Group<'_>], omitted: &[String]| -> String {
        let mut u = String::new();
        let _ = writeln!(u, "Now: {now}\n");
        let _ = writeln!(u, "## Alerting signals (latest value past its threshold)");
        for line in &g[1].1 {
            let _ = writeln!(u, "{line}");
        }
        let _ = writeln!(u, "\n## Recent decisions, newest first");
        if g[0].1.is_empty() {
            let _ = writeln!(u, "(none)");
        }
        for line in &g[0].1 {
            let _ = writeln!(u, "{line}");
        }
        if !omitted.is_empty() {
            let _ = writeln!(
                u,
                "\n(Omitted to fit the prompt size: {}.)",
                omitted.join(", ")
            );
        }
        let _ = writeln!(
            u,
            "\n## Answer\nRank up to {} root-cause hypotheses, most likely first (rank 1). Answer with one JSON object matching this JSON schema:\n{schema_text}",
            super::schema::MAX_HYPOTHESES
        );
        u
    };
    let budget = (max_prompt_tokens as usize)
        .saturating_mul(CHARS_PER_TOKEN)
        .saturating_sub(DIAGNOSE_SYSTEM.len());
    let (user, omitted) = fit(budget, &mut groups, &render);
    Prompt {
        system: DIAGNOSE_SYSTEM.to_string(),
        user,
        alerting: alerting.iter().map(|s| s.name.clone()).collect(),
        omitted,
    }
}
