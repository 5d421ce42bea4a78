//! The weekly meta-review a person reads: outcomes by area and proposer, budget, freezes and
//! escalations; calibration overall and per proposer against the four periods before; blind
//! spots; lessons; ranked next moves — computed from the ledger alone, rendered as Markdown
//! ([`markdown`]), one self-contained HTML file with inline SVG charts ([`html`]) or the stable
//! JSON shape of [`model`].

pub mod html;
pub mod markdown;
pub mod model;
mod tables;

pub use model::*;

use crate::calibrate::{Calibration, key_of};
use crate::config::SignalConfig;
use crate::event::EngineEvent;
use crate::guard::{self, GuardPolicy};
use crate::intervention::{ExpectedChange, Intervention, Outcome, Status};
use crate::ledger::{Ledger, LedgerError};
use crate::span::Span;
use crate::validate::calibration::{CalibrationRecord, CalibrationSummary, summarize};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// What a review is computed against besides the ledger.
#[derive(Debug, Clone, Copy)]
pub struct ReviewInputs<'a> {
    /// The configured signals.
    pub signals: &'a BTreeMap<String, SignalConfig>,
    /// The guard policy (freezes, daily budget).
    pub policy: &'a GuardPolicy,
    /// `confidence_threshold`, for each proposer's autonomy.
    pub confidence_threshold: f64,
}

/// Output formats of `kaizen review`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Markdown (terminal and issue trackers).
    Markdown,
    /// One self-contained HTML file.
    Html,
    /// The JSON shape of [`model`].
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "md" | "markdown" => Ok(Format::Markdown),
            "html" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown review format {other:?}: expected md, html or json"
            )),
        }
    }
}

fn record_of(
    iv: &Intervention,
    figures: Option<&crate::validate::Figures>,
) -> Option<CalibrationRecord> {
    let outcome = iv.outcome?;
    let baseline = figures.and_then(|f| f.baseline).filter(|b| *b != 0.0);
    let predicted = match iv.candidate.prediction.change {
        ExpectedChange::Relative(r) => Some(r),
        ExpectedChange::Absolute(a) => baseline.map(|b| a / b),
        ExpectedChange::Below(t) | ExpectedChange::Above(t) => baseline.map(|b| (t - b) / b),
    };
    Some(CalibrationRecord {
        confidence: iv.candidate.confidence,
        // Without a baseline the magnitude cannot be put on the relative scale; the record still
        // counts for Brier and reliability (bias skips a zero prediction).
        predicted: predicted.unwrap_or(0.0),
        realised: figures.and_then(|f| f.estimate),
        lower: figures.and_then(|f| f.lower),
        upper: figures.and_then(|f| f.upper),
        outcome,
    })
}

fn view_of(now: &CalibrationSummary, before: &CalibrationSummary) -> CalibrationView {
    let bins = now
        .reliability
        .iter()
        .map(|b| Bin {
            lo: b.from,
            hi: b.to,
            n: b.n,
            hits: b.validated,
            hit_rate: b.observed,
            mean_confidence: b.mean_confidence,
            wilson_lo: b.wilson.0,
            wilson_hi: b.wilson.1,
        })
        .collect();
    CalibrationView {
        n: now.n,
        decided: now.decided,
        brier: now.brier,
        bins,
        coverage: now.coverage,
        bias: now.bias,
        previous_brier: before.brier,
        previous_n: before.decided,
        previous_bias: before.bias,
        drift: Drift::lower_better(now.brier, before.brier, BRIER_SAME_WITHIN),
        // Bias: distance from 0 is what matters; 0.1 in log terms ≈ 10% of the predicted size.
        bias_drift: Drift::lower_better(now.bias.map(f64::abs), before.bias.map(f64::abs), 0.1),
    }
}

fn bump(map: &mut Outcomes, key: &str, by: u64) {
    let e = map.entry(key.to_string()).or_insert(0);
    *e = e.saturating_add(by);
}

/// Bucket means of `series` in `[from, to)`, at most `buckets` of them.
fn downsample(
    series: &[(DateTime<Utc>, f64)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    buckets: i64,
) -> Vec<(DateTime<Utc>, f64)> {
    let span_ms = (to - from).num_milliseconds().max(1);
    let width = (span_ms / buckets.max(1)).max(1);
    let mut sums: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
    for &(at, value) in series.iter().filter(|(_, v)| v.is_finite()) {
        let b = (at - from).num_milliseconds() / width;
        let e = sums.entry(b).or_insert((0.0, 0));
        e.0 += value;
        e.1 = e.1.saturating_add(1);
    }
    sums.into_iter()
        .map(|(b, (sum, n))| {
            let at = from + chrono::Duration::milliseconds(b.saturating_mul(width));
            (at, sum / f64::from(n.max(1)))
        })
        .collect()
}

impl MetaReview {
    /// Reviews the `period` ending at `to`.
    pub fn compute(
        ledger: &Ledger,
        inputs: ReviewInputs<'_>,
        to: DateTime<Utc>,
        period: Span,
    ) -> Result<MetaReview, LedgerError> {
        let from = period.before(to);
        // Drift and track records look at the four periods before (five in all).
        let prev_from = period.saturating_mul(4).before(from);
        let all = ledger.all()?;
        let in_period = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t >= from && t < to);
        let policy = inputs.policy;

        let mut outcomes = empty_outcomes();
        let mut by_area: BTreeMap<String, Outcomes> = BTreeMap::new();
        let mut by_proposer: BTreeMap<String, Outcomes> = BTreeMap::new();
        let mut count = |iv: &Intervention, key: &str| {
            bump(&mut outcomes, key, 1);
            bump(
                by_area
                    .entry(iv.candidate.area.clone())
                    .or_insert_with(empty_outcomes),
                key,
                1,
            );
            bump(
                by_proposer.entry(key_of(iv)).or_insert_with(empty_outcomes),
                key,
                1,
            );
        };

        // Calibration records: this period and the four before, overall and per proposer.
        let mut records: Vec<CalibrationRecord> = Vec::new();
        let mut previous: Vec<CalibrationRecord> = Vec::new();
        let mut records_of: BTreeMap<String, (Vec<CalibrationRecord>, Vec<CalibrationRecord>)> =
            BTreeMap::new();
        // Five-period outcomes per area and per proposer, for blind spots and next moves.
        let mut area_five: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        let mut proposer_five: BTreeMap<String, (usize, usize, BTreeSet<String>)> = BTreeMap::new();
        let mut budget_days: BTreeMap<String, u64> = BTreeMap::new();
        let mut contradicted: BTreeSet<String> = BTreeSet::new();
        for iv in &all {
            if in_period(Some(iv.created_at)) {
                count(iv, "proposed");
                match iv.status {
                    Status::Blocked => count(iv, "blocked"),
                    Status::Backlog => count(iv, "backlog"),
                    Status::Proposed => count(iv, "awaiting_approval"),
                    _ => {}
                }
            }
            if let Some(at) = iv.applied_at.filter(|t| in_period(Some(*t))) {
                count(iv, "applied");
                let day = at.format("%Y-%m-%d").to_string();
                let e = budget_days.entry(day).or_insert(0);
                *e = e.saturating_add(1);
            }
            let Some(fin) = iv.finalized_at else { continue };
            if !matches!(iv.status, Status::Validated | Status::Reverted) {
                continue;
            }
            if in_period(Some(fin)) {
                if iv.status == Status::Reverted {
                    count(iv, "reverted");
                }
                if let Some(o) = iv.outcome {
                    count(iv, o.as_str());
                    if matches!(o, Outcome::NoEffect | Outcome::Regressed) {
                        contradicted.extend(iv.candidate.origin.cites.iter().cloned());
                    }
                }
            }
            if iv.applied_at.is_none() {
                continue;
            }
            let key = key_of(iv);
            if fin >= prev_from && fin < to {
                let decided = matches!(
                    iv.outcome,
                    Some(Outcome::Validated | Outcome::NoEffect | Outcome::Regressed)
                );
                let hit = iv.outcome == Some(Outcome::Validated);
                let a = area_five.entry(iv.candidate.area.clone()).or_default();
                if decided {
                    a.0 += 1;
                }
                if hit {
                    a.1 += 1;
                }
                if iv.outcome == Some(Outcome::NoEffect) {
                    a.2 += 1;
                }
                let p = proposer_five.entry(key.clone()).or_default();
                if decided {
                    p.0 += 1;
                }
                if hit {
                    p.1 += 1;
                }
                p.2.insert(iv.candidate.area.clone());
            }
            if fin < prev_from || fin >= to {
                // Calibration records are of this period and the four before: the verdict of
                // anything else is not read (a year of history is thousands of them).
                continue;
            }
            let verdict = ledger.verdict(iv.id)?;
            let Some(rec) = record_of(iv, verdict.as_ref().map(|v| &v.figures)) else {
                continue;
            };
            if in_period(Some(fin)) {
                records.push(rec.clone());
                records_of.entry(key).or_default().0.push(rec);
            } else if fin >= prev_from && fin < from {
                previous.push(rec.clone());
                records_of.entry(key).or_default().1.push(rec);
            }
        }
        let repeats: u64 = ledger
            .repeated_since(from)?
            .iter()
            .filter(|r| r.last_seen < to)
            .map(|r| r.repeats)
            .fold(0u64, u64::saturating_add);
        bump(&mut outcomes, "suppressed_repeats", repeats);

        let calibration = view_of(&summarize(&records), &summarize(&previous));

        // Autonomy: each proposer's whole finalized history up to the period's end.
        let history: Vec<Intervention> = all
            .iter()
            .filter(|iv| iv.created_at < to && iv.finalized_at.is_none_or(|f| f < to))
            .cloned()
            .collect();
        let autonomy: BTreeMap<String, Calibration> =
            Calibration::all(&history, inputs.confidence_threshold)
                .into_iter()
                .map(|c| (c.proposer.clone(), c))
                .collect();
        let keys: BTreeSet<String> = by_proposer
            .keys()
            .chain(records_of.keys())
            .chain(autonomy.keys())
            .cloned()
            .collect();
        let per_proposer: Vec<ProposerReview> = keys
            .into_iter()
            .map(|k| {
                let (now, before) = records_of.get(&k).cloned().unwrap_or_default();
                ProposerReview {
                    outcomes: by_proposer.get(&k).cloned().unwrap_or_else(empty_outcomes),
                    calibration: view_of(&summarize(&now), &summarize(&before)),
                    autonomy: autonomy.get(&k).cloned(),
                    proposer: k,
                }
            })
            .collect();

        // Shadowed candidates and escalations, from the period's events.
        let mut trouble: BTreeMap<String, usize> = BTreeMap::new();
        let mut escalations = Vec::new();
        let mut gaps_by_source: BTreeMap<String, usize> = BTreeMap::new();
        let mut lessons = LessonActivity::default();
        // [from, to): an event at `to` itself is the next period's, not both weeks'.
        for e in ledger
            .events_between(from, to)?
            .into_iter()
            .filter(|e| e.at < to)
        {
            match &e.event {
                EngineEvent::ShadowWouldApply { .. } => bump(&mut outcomes, "shadowed", 1),
                EngineEvent::Escalation { .. } => escalations.push(Escalation {
                    at: e.at,
                    intervention: e.intervention.map(|i| i.to_string()),
                    detail: e.detail.clone(),
                }),
                EngineEvent::SampleGap { source, .. } => {
                    *gaps_by_source.entry(source.clone()).or_default() += 1;
                }
                EngineEvent::LessonCreated { lesson, .. } => lessons.created.push(lesson.clone()),
                EngineEvent::LessonStrengthened { lesson, .. } => {
                    lessons.strengthened.push(lesson.clone())
                }
                EngineEvent::LessonRetired { lesson, .. } => lessons.retired.push(lesson.clone()),
                _ => {}
            }
            if matches!(
                e.kind.as_str(),
                "sample_error" | "proposal_rejected" | "proposer_error" | "escalation"
            ) {
                *trouble.entry(e.kind).or_default() += 1;
            }
        }
        lessons.contradicted = contradicted.into_iter().collect();

        let mut alerting = Vec::new();
        for (name, sc) in inputs.signals {
            // As points: the review knows which signal it asked for, so no copy of its name per
            // sample (a week of a minute cadence is 10k samples per signal).
            let mut samples = ledger.points(name, from, to)?;
            // The period is [from, to), as for everything else here: a sample at `to` itself is
            // the next period's (read inclusively, it counted in both weeks' alert shares and
            // drew a 97th bucket past the end of the chart).
            samples.truncate(samples.partition_point(|(at, _)| *at < to));
            if samples.is_empty() {
                continue;
            }
            let alerts = samples
                .iter()
                .filter(|(_, v)| sc.signal.is_alerting(*v))
                .count();
            if alerts == 0 {
                continue;
            }
            let about: Vec<&Intervention> = all
                .iter()
                .filter(|iv| iv.candidate.prediction.signal == *name)
                .collect();
            alerting.push(AlertingSignal {
                signal: name.clone(),
                unit: sc.signal.unit.clone(),
                alert_share: alerts as f64 / samples.len() as f64,
                interventions: about
                    .iter()
                    .filter(|iv| in_period(Some(iv.created_at)))
                    .count(),
                series: downsample(&samples, from, to, 96),
                applies: about
                    .iter()
                    .filter_map(|iv| iv.applied_at)
                    .filter(|t| in_period(Some(*t)))
                    .collect(),
                reverts: about
                    .iter()
                    .filter(|iv| iv.status == Status::Reverted)
                    .filter_map(|iv| iv.finalized_at)
                    .filter(|t| in_period(Some(*t)))
                    .collect(),
            });
        }

        let mut blocks: BTreeMap<String, usize> = BTreeMap::new();
        let mut blocks_of: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for iv in all
            .iter()
            .filter(|iv| in_period(Some(iv.created_at)) && iv.status == Status::Blocked)
        {
            for (_, v) in ledger.guard_verdicts(iv.id)? {
                if v.decision == guard::Decision::Block {
                    *blocks.entry(v.guard.clone()).or_default() += 1;
                    *blocks_of
                        .entry(key_of(iv))
                        .or_default()
                        .entry(v.guard)
                        .or_default() += 1;
                }
            }
        }
        let mut blocked_by: Vec<GuardCount> = blocks
            .into_iter()
            .map(|(guard, n)| GuardCount { guard, n })
            .collect();
        blocked_by.sort_by(|a, b| b.n.cmp(&a.n).then(a.guard.cmp(&b.guard)));

        let budget = {
            let mut days = Vec::new();
            let mut day = from.date_naive();
            let last = (to - chrono::Duration::milliseconds(1)).date_naive();
            while day <= last && days.len() < 92 {
                let key = day.format("%Y-%m-%d").to_string();
                days.push(BudgetDay {
                    applied: budget_days.get(&key).copied().unwrap_or(0),
                    day: key,
                    budget: policy.daily_budget,
                });
                let Some(next) = day.succ_opt() else { break };
                day = next;
            }
            days
        };

        let view = ledger.view(
            to,
            chrono::Duration::days(2),
            policy.freeze_after_rollbacks.max(1),
        )?;
        let frozen: Vec<Frozen> = guard::active_freezes(&view, policy, to)
            .into_iter()
            .map(|f| Frozen {
                area: f.area,
                until: f.until,
                reason: f.reason,
            })
            .collect();

        let timeline = timeline(&all, from, to);

        let mut review = MetaReview {
            version: FORMAT_VERSION,
            period: Period { from, to },
            outcomes,
            by_area,
            blocked_by,
            budget,
            frozen,
            escalations,
            calibration,
            per_proposer,
            alerting,
            timeline,
            trouble,
            blind_spots: Vec::new(),
            next_moves: Vec::new(),
            lessons,
        };
        review.judge(
            &all,
            &area_five,
            &proposer_five,
            &blocks_of,
            &gaps_by_source,
        );
        Ok(review)
    }

    /// Blind spots and ranked next moves, from the figures already computed.
    fn judge(
        &mut self,
        all: &[Intervention],
        area_five: &BTreeMap<String, (usize, usize, usize)>,
        proposer_five: &BTreeMap<String, (usize, usize, BTreeSet<String>)>,
        blocks_of: &BTreeMap<String, BTreeMap<String, usize>>,
        gaps_by_source: &BTreeMap<String, usize>,
    ) {
        use crate::human::share;
        let mut spots = Vec::new();
        let mut moves: Vec<(u32, NextMove)> = Vec::new();
        let spot = |kind: &str, subject: &str, detail: String| BlindSpot {
            kind: kind.into(),
            subject: subject.into(),
            detail,
        };
        let mv = |action: &str, subject: &str, why: String| NextMove {
            action: action.into(),
            subject: subject.into(),
            why,
        };
        for e in &self.escalations {
            let subject = e.intervention.clone().unwrap_or_else(|| "kaizen".into());
            moves.push((
                95,
                mv(
                    "resolve_escalation",
                    &subject,
                    format!("needs a human: {}", e.detail),
                ),
            ));
        }
        for a in &self.alerting {
            if a.interventions == 0 && a.alert_share >= 0.05 {
                spots.push(spot(
                    "unanswered_alert",
                    &a.signal,
                    format!(
                        "past its alert threshold {} of the period and nothing was proposed for it",
                        share(a.alert_share)
                    ),
                ));
                moves.push((
                    90,
                    mv(
                        "write_rule",
                        &a.signal,
                        format!(
                            "it alerted {} of the period unanswered: write a rule (or a lesson for the LLM) for it",
                            share(a.alert_share)
                        ),
                    ),
                ));
            }
        }
        for f in &self.frozen {
            spots.push(spot(
                "frozen",
                &f.area,
                format!(
                    "frozen until {} ({})",
                    f.until.format("%Y-%m-%d %H:%M UTC"),
                    f.reason
                ),
            ));
            moves.push((
                85,
                mv(
                    "unfreeze_area",
                    &f.area,
                    format!("its fixes keep failing ({}); a human should find out why before the freeze lifts", f.reason),
                ),
            ));
        }
        // Backlog: per area, rows and the distinct changes among them (a rule re-proposes).
        let mut backlog: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
        for iv in all.iter().filter(|iv| iv.status == Status::Backlog) {
            let e = backlog.entry(iv.candidate.area.clone()).or_default();
            e.0 += 1;
            e.1.insert(format!(
                "{} {}",
                iv.candidate.origin,
                iv.candidate.targets().join(",")
            ));
        }
        for (area, (n, distinct)) in &backlog {
            moves.push((
                80,
                mv(
                    "build_canary",
                    area,
                    format!(
                        "{} distinct change(s) ({n} proposal(s)) wait in the backlog and can never be applied without a canary",
                        distinct.len()
                    ),
                ),
            ));
        }
        for (source, n) in gaps_by_source {
            spots.push(spot(
                "source_gaps",
                source,
                format!("{n} sampling failure(s) this period"),
            ));
            moves.push((
                75,
                mv(
                    "fix_source",
                    source,
                    format!(
                        "{n} sampling failure(s) this period weaken every validation that uses it"
                    ),
                ),
            ));
        }
        for (area, (decided, hits, no_effect)) in area_five {
            if *no_effect >= 2 && *hits == 0 {
                spots.push(spot(
                    "repeated_no_effect",
                    area,
                    format!("{no_effect} change(s) had no effect and none of {decided} decided validated in the last five periods"),
                ));
                moves.push((
                    72,
                    mv(
                        "investigate_area",
                        area,
                        format!("{no_effect} change(s) there had no effect (0 of {decided} validated): the cause is elsewhere, or the fixes are wrong"),
                    ),
                ));
            }
        }
        for (proposer, (decided, hits, areas)) in proposer_five {
            if *decided >= 2 && *hits == 0 {
                let areas: Vec<&str> = areas.iter().map(String::as_str).collect();
                moves.push((
                    70,
                    mv(
                        "revise_rule",
                        proposer,
                        format!(
                            "{decided} finalized in area {}, none validated in five periods",
                            areas.join(", ")
                        ),
                    ),
                ));
            }
        }
        for (proposer, guards) in blocks_of {
            let proposed = self
                .per_proposer
                .iter()
                .find(|p| p.proposer == *proposer)
                .and_then(|p| p.outcomes.get("proposed").copied())
                .unwrap_or(0);
            let blocked = self
                .per_proposer
                .iter()
                .find(|p| p.proposer == *proposer)
                .and_then(|p| p.outcomes.get("blocked").copied())
                .unwrap_or(0);
            if proposed >= 3 && blocked.saturating_mul(2) > proposed {
                let mut list: Vec<(&String, &usize)> = guards.iter().collect();
                list.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let named: Vec<String> = list.iter().map(|(g, n)| format!("{g} ×{n}")).collect();
                spots.push(spot(
                    "mostly_blocked",
                    proposer,
                    format!(
                        "{blocked} of {proposed} proposals blocked ({})",
                        named.join(", ")
                    ),
                ));
            }
        }
        for p in &self.per_proposer {
            if let Some(c) = p.autonomy.as_ref().filter(|c| c.needs_approval) {
                moves.push((65, mv("review_autonomy", &p.proposer, c.verdict())));
            }
        }
        let c = &self.calibration;
        if c.drift.direction == Direction::Worse {
            spots.push(spot(
                "calibration_worse",
                "kaizen",
                format!(
                    "Brier {} against {} in the four periods before",
                    crate::human::opt(c.brier),
                    crate::human::opt(c.previous_brier)
                ),
            ));
        }
        if let Some(b) = c.brier.filter(|b| *b > 0.25) {
            moves.push((
                60,
                mv(
                    "recalibrate",
                    "kaizen",
                    format!("stated confidences score worse than always saying 50% (Brier {} > 0.25); lower them or improve the proposers", crate::human::sig3(b)),
                ),
            ));
        }
        if let Some(bias) = c.bias.filter(|b| *b < -0.4) {
            moves.push((
                50,
                mv(
                    "recalibrate",
                    "predictions",
                    format!("effects undershoot predictions (median ln realised/predicted {}); predict smaller changes", crate::human::sig3(bias)),
                ),
            ));
        }
        for (kind, n) in &self.trouble {
            match kind.as_str() {
                "proposal_rejected" => spots.push(spot(
                    "rejected_proposals",
                    "llm",
                    format!("{n} LLM candidate(s) were rejected as invalid (see `kaizen events --kind proposal_rejected`)"),
                )),
                "proposer_error" => spots.push(spot(
                    "proposer_errors",
                    "proposers",
                    format!("a proposer failed {n} time(s) (see `kaizen events --kind proposer_error`)"),
                )),
                _ => {}
            }
        }
        moves.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.subject.cmp(&b.1.subject))
                .then_with(|| a.1.why.cmp(&b.1.why))
        });
        self.blind_spots = spots;
        self.next_moves = moves.into_iter().map(|(_, m)| m).collect();
    }

    /// Renders in `format`.
    pub fn render_as(&self, format: Format) -> String {
        match format {
            Format::Markdown => markdown::render(self),
            Format::Html => html::render(self),
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_else(|e| {
                // Serialising plain data cannot fail; say so rather than print nothing.
                format!("{{\"error\": \"cannot serialise the review: {e}\"}}")
            }),
        }
    }

    /// The Markdown report.
    pub fn render(&self) -> String {
        markdown::render(self)
    }
}

/// The compact record of a review kept in the ledger's `meta_review` event (the charts' series
/// are left out: the ledger already holds the samples).
pub fn summary_json(review: &MetaReview, written_to: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "version": review.version,
        "period": review.period,
        "outcomes": review.outcomes,
        "brier": review.calibration.brier,
        "drift": review.calibration.drift,
        "blind_spots": review.blind_spots,
        "next_moves": review.next_moves,
        "written_to": written_to,
    })
}

/// Outcomes over time: daily slices for periods of two days or more, hourly below (at most 92).
fn timeline(all: &[Intervention], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Slice> {
    let span = to - from;
    let width = if span >= chrono::Duration::days(2) {
        chrono::Duration::days(1)
    } else {
        chrono::Duration::hours(1)
    };
    let n = (span.num_milliseconds() / width.num_milliseconds().max(1)).clamp(1, 92);
    let mut slices: Vec<Slice> = (0..n)
        .map(|i| Slice {
            from: from + width * i32::try_from(i).unwrap_or(0),
            applied: 0,
            validated: 0,
            no_effect: 0,
            regressed: 0,
            inconclusive: 0,
        })
        .collect();
    let index = |t: DateTime<Utc>| -> Option<usize> {
        if t < from || t >= to {
            return None;
        }
        let i = (t - from).num_milliseconds() / width.num_milliseconds().max(1);
        usize::try_from(i.min(n - 1)).ok()
    };
    for iv in all {
        if let Some(s) = iv
            .applied_at
            .and_then(index)
            .and_then(|i| slices.get_mut(i))
        {
            s.applied += 1;
        }
        let Some(s) = iv
            .finalized_at
            .and_then(index)
            .and_then(|i| slices.get_mut(i))
        else {
            continue;
        };
        match iv.outcome {
            Some(Outcome::Validated) => s.validated += 1,
            Some(Outcome::NoEffect) => s.no_effect += 1,
            Some(Outcome::Regressed) => s.regressed += 1,
            Some(Outcome::Inconclusive) => s.inconclusive += 1,
            None => {}
        }
    }
    slices
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;
    use crate::signal::Sample;

    /// `signals` (the YAML of a config's `signals:` map), the week `[from, to)` the tests
    /// review, and an empty in-memory ledger.
    fn week_of(signals: &str) -> (Config, DateTime<Utc>, DateTime<Utc>, Ledger) {
        let config = Config::parse(
            &format!("signals:\n{signals}"),
            std::path::Path::new("kaizen.yaml"),
        )
        .unwrap();
        let to: DateTime<Utc> = "2026-05-11T00:00:00Z".parse().unwrap();
        let from = to - chrono::Duration::days(7);
        (config, from, to, Ledger::in_memory().unwrap())
    }

    /// The review of the week ending at `to`, with `config`'s signals and guard policy.
    fn weekly(ledger: &Ledger, config: &Config, to: DateTime<Utc>) -> MetaReview {
        MetaReview::compute(
            ledger,
            ReviewInputs {
                signals: &config.signals,
                policy: &config.guards,
                confidence_threshold: config.confidence_threshold,
            },
            to,
            Span::days(7),
        )
        .unwrap()
    }

    /// The alerting signals of a review: each signal's share of samples past its threshold in
    /// the period (samples before it do not count), and its series as the means of 96 equal
    /// buckets of the period; a signal that never alerted, or has no samples, is not listed.
    #[test]
    fn alerting_signals_are_their_share_past_the_threshold_and_bucket_means() {
        let (config, from, to, mut ledger) = week_of(
            "  latency_ms: { unit: ms, better: lower, alert_above: 200 }\n  queue: { unit: jobs, better: lower, alert_above: 50 }\n  idle: { unit: s, better: lower, alert_above: 1 }\n",
        );
        let five = chrono::Duration::minutes(5);
        // The day before the period: alerting all the time, outside what the review reads.
        let before: Vec<Sample> = (1..=288)
            .map(|k| Sample::new("latency_ms", from - five * k, 900.0))
            .collect();
        ledger.record_samples(&before).unwrap();
        // The period: every 4th latency sample past 200 (a quarter), the queue never past 50.
        let mut recorded = Vec::new();
        for k in 0..2016 {
            let at = from + five * k;
            let latency = if k % 4 == 0 {
                300.0 + f64::from(k % 7)
            } else {
                100.0 + f64::from(k % 5)
            };
            recorded.push((at, latency));
            ledger
                .record_samples(&[
                    Sample::new("latency_ms", at, latency),
                    Sample::new("queue", at, 10.0),
                ])
                .unwrap();
        }
        // The next period's first sample, at `to` itself: alerting, and not this week's.
        ledger
            .record_samples(&[Sample::new("latency_ms", to, 900.0)])
            .unwrap();
        let review = weekly(&ledger, &config, to);
        assert_eq!(review.alerting.len(), 1, "{:?}", review.alerting);
        let a = &review.alerting[0];
        assert_eq!((a.signal.as_str(), a.unit.as_str()), ("latency_ms", "ms"));
        assert_eq!(a.alert_share, 0.25);
        assert_eq!(a.interventions, 0);
        // 96 buckets of 105 minutes, 21 samples each, in order.
        let width = chrono::Duration::minutes(105);
        let want: Vec<(DateTime<Utc>, f64)> = recorded
            .chunks(21)
            .enumerate()
            .map(|(b, chunk)| {
                let sum: f64 = chunk.iter().map(|(_, v)| v).sum();
                (from + width * b as i32, sum / 21.0)
            })
            .collect();
        assert_eq!(a.series.len(), 96);
        for ((at, v), (want_at, want_v)) in a.series.iter().zip(&want) {
            assert_eq!(at, want_at);
            assert!((v - want_v).abs() < 1e-9, "{at}: {v} vs {want_v}");
        }
    }

    #[test]
    fn events_on_the_period_bounds_are_the_later_periods() {
        let (config, from, to, mut ledger) =
            week_of("  latency_ms: { unit: ms, better: lower, alert_above: 200 }\n");
        let escalation = |key: &str| EngineEvent::Escalation {
            intervention: None,
            stage: crate::event::Stage::Reconcile,
            key: key.into(),
            text: format!("{key} needs a human"),
        };
        for (at, key) in [
            (from - chrono::Duration::seconds(1), "last week"),
            (from, "first instant"),
            (to - chrono::Duration::seconds(1), "last instant"),
            (to, "next week"),
        ] {
            ledger.append(at, &escalation(key)).unwrap();
        }
        let texts = |r: MetaReview| -> Vec<String> {
            r.escalations.into_iter().map(|e| e.detail).collect()
        };
        assert_eq!(
            texts(weekly(&ledger, &config, to)),
            ["first instant needs a human", "last instant needs a human"]
        );
        // Each event is in exactly one of two consecutive weeks.
        assert_eq!(
            texts(weekly(&ledger, &config, to + chrono::Duration::days(7))),
            ["next week needs a human"]
        );
    }
}
