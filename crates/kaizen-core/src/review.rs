//! The weekly meta-review: calibration (and its drift against the previous four weeks), blind
//! spots, and the highest-value next moves — computed from the ledger alone.

use crate::config::SignalConfig;
use crate::guard::{self, GuardPolicy};
use crate::intervention::{ExpectedChange, Intervention, Outcome, Status};
use crate::ledger::{Ledger, LedgerError};
use crate::span::Span;
use crate::validate::calibration::{CalibrationRecord, CalibrationSummary, summarize};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Counts of what happened in a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Activity {
    /// Interventions recorded.
    pub proposed: usize,
    /// Of those, blocked.
    pub blocked: usize,
    /// Of those, parked for want of a canary.
    pub backlog: usize,
    /// Applied in the period.
    pub applied: usize,
    /// Finalized validated in the period.
    pub validated: usize,
    /// Reverted in the period.
    pub reverted: usize,
    /// Repeats of parked changes (frozen area, backlog, duplicate) counted on their rows instead
    /// of being recorded anew, for rows last repeated in the period.
    pub suppressed_repeats: u64,
}

/// A signal that spent time past its alert threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertingSignal {
    /// The signal.
    pub signal: String,
    /// Share of its samples in the period past a threshold.
    pub alert_share: f64,
    /// Interventions in the period that predicted a move of this signal.
    pub interventions: usize,
}

/// The meta-review of one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetaReview {
    /// Period start.
    pub from: DateTime<Utc>,
    /// Period end.
    pub to: DateTime<Utc>,
    /// What happened.
    pub activity: Activity,
    /// Calibration of interventions finalized in the period.
    pub calibration: CalibrationSummary,
    /// Calibration of the four periods before (the baseline for drift).
    pub previous: CalibrationSummary,
    /// Change in Brier score against the previous four periods (positive = worse).
    pub brier_drift: Option<f64>,
    /// Change in bias (median log realised/predicted) against the previous four periods.
    pub bias_drift: Option<f64>,
    /// Signals that alerted, with how much was done about them.
    pub alerting: Vec<AlertingSignal>,
    /// Guards by how often they blocked in the period.
    pub blocking_guards: Vec<(String, usize)>,
    /// Event kinds that signal trouble (sample_error, proposal_rejected, proposer_error,
    /// escalation), counted over the period.
    pub trouble: BTreeMap<String, usize>,
    /// Rules (or proposers) with their finalized outcomes in the last five periods.
    pub track_record: Vec<(String, usize, usize)>,
    /// Blind spots, one sentence each.
    pub blind_spots: Vec<String>,
    /// Next moves, most valuable first.
    pub next_moves: Vec<String>,
}

fn record_of(
    iv: &Intervention,
    figures: Option<&crate::validate::Figures>,
) -> Option<CalibrationRecord> {
    let outcome = iv.outcome?;
    let baseline = figures.and_then(|f| f.baseline).filter(|b| *b != 0.0);
    let predicted = match iv.candidate.prediction.change {
        ExpectedChange::Relative(r) => r,
        ExpectedChange::Absolute(a) => a / baseline?,
        ExpectedChange::Below(t) | ExpectedChange::Above(t) => (t - baseline?) / baseline?,
    };
    Some(CalibrationRecord {
        confidence: iv.candidate.confidence,
        predicted,
        realised: figures.and_then(|f| f.estimate),
        lower: figures.and_then(|f| f.lower),
        upper: figures.and_then(|f| f.upper),
        outcome,
    })
}

fn origin_key(iv: &Intervention) -> String {
    iv.candidate.origin.to_string()
}

impl MetaReview {
    /// Reviews the `period` ending at `to`.
    pub fn compute(
        ledger: &Ledger,
        signals: &BTreeMap<String, SignalConfig>,
        policy: &GuardPolicy,
        to: DateTime<Utc>,
        period: Span,
    ) -> Result<MetaReview, LedgerError> {
        let from = period.before(to);
        let prev_from = period.saturating_mul(4).before(from);
        let all = ledger.all()?;
        let in_period = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t >= from && t < to);

        let mut activity = Activity::default();
        let mut records = Vec::new();
        let mut previous = Vec::new();
        let mut track: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        activity.suppressed_repeats = ledger
            .repeated_since(from)?
            .iter()
            .filter(|r| r.last_seen < to)
            .map(|r| r.repeats)
            .sum();
        for iv in &all {
            if in_period(Some(iv.created_at)) {
                activity.proposed += 1;
                match iv.status {
                    Status::Blocked => activity.blocked += 1,
                    Status::Backlog => activity.backlog += 1,
                    _ => {}
                }
            }
            if in_period(iv.applied_at) {
                activity.applied += 1;
            }
            if in_period(iv.finalized_at) {
                match iv.status {
                    Status::Validated => activity.validated += 1,
                    Status::Reverted => activity.reverted += 1,
                    _ => {}
                }
            }
            let Some(fin) = iv.finalized_at else { continue };
            if !matches!(iv.status, Status::Validated | Status::Reverted) || iv.applied_at.is_none()
            {
                continue;
            }
            let verdict = ledger.verdict(iv.id)?;
            let rec = record_of(iv, verdict.as_ref().map(|v| &v.figures));
            if fin >= from && fin < to {
                records.extend(rec);
            } else if fin >= prev_from && fin < from {
                previous.extend(rec);
            }
            if fin >= prev_from && fin < to {
                let e = track.entry(origin_key(iv)).or_default();
                if iv.outcome == Some(Outcome::Validated) && iv.status == Status::Validated {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
            }
        }
        let calibration = summarize(&records);
        let previous = summarize(&previous);
        let drift = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);

        let mut alerting = Vec::new();
        for (name, sc) in signals {
            let samples = ledger.samples(name, from, to)?;
            if samples.is_empty() {
                continue;
            }
            let alerts = samples
                .iter()
                .filter(|s| sc.signal.is_alerting(s.value))
                .count();
            if alerts == 0 {
                continue;
            }
            let interventions = all
                .iter()
                .filter(|iv| {
                    in_period(Some(iv.created_at)) && iv.candidate.prediction.signal == *name
                })
                .count();
            alerting.push(AlertingSignal {
                signal: name.clone(),
                alert_share: alerts as f64 / samples.len() as f64,
                interventions,
            });
        }

        let mut blocks: BTreeMap<String, usize> = BTreeMap::new();
        for iv in all
            .iter()
            .filter(|iv| in_period(Some(iv.created_at)) && iv.status == Status::Blocked)
        {
            for (_, v) in ledger.guard_verdicts(iv.id)? {
                if v.decision == guard::Decision::Block {
                    *blocks.entry(v.guard).or_default() += 1;
                }
            }
        }
        let mut blocking_guards: Vec<(String, usize)> = blocks.into_iter().collect();
        blocking_guards.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

        let mut trouble: BTreeMap<String, usize> = BTreeMap::new();
        for e in ledger.events_between(from, to)? {
            if matches!(
                e.kind.as_str(),
                "sample_error" | "proposal_rejected" | "proposer_error" | "escalation"
            ) {
                *trouble.entry(e.kind).or_default() += 1;
            }
        }

        let mut track_record: Vec<(String, usize, usize)> =
            track.into_iter().map(|(k, (v, f))| (k, v, f)).collect();
        track_record.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));

        // Blind spots and next moves.
        let mut blind_spots = Vec::new();
        let mut moves: Vec<(u32, String)> = Vec::new();
        for a in &alerting {
            if a.interventions == 0 && a.alert_share >= 0.05 {
                blind_spots.push(format!(
                    "{} was past its alert threshold {:.0}% of the period and nothing was proposed for it",
                    a.signal,
                    a.alert_share * 100.0
                ));
                moves.push((90, format!("write a rule (or a lesson for the LLM) for {}: it alerted {:.0}% of the period unanswered", a.signal, a.alert_share * 100.0)));
            }
        }
        // Per area: backlog rows, and distinct changes among them (a rule re-proposes its change).
        let mut backlog_areas: BTreeMap<String, (usize, std::collections::BTreeSet<String>)> =
            BTreeMap::new();
        for iv in all.iter().filter(|iv| iv.status == Status::Backlog) {
            let e = backlog_areas.entry(iv.candidate.area.clone()).or_default();
            e.0 += 1;
            e.1.insert(format!(
                "{} {}",
                iv.candidate.origin,
                iv.candidate.targets().join(",")
            ));
        }
        for (area, (n, distinct)) in &backlog_areas {
            moves.push((80, format!(
                "build a canary for area `{area}`: {} distinct change(s) ({n} proposal(s)) wait in the backlog and can never be applied without one",
                distinct.len()
            )));
        }
        let view = ledger.view(to, chrono::Duration::days(2))?;
        for f in guard::active_freezes(&view, policy, to) {
            blind_spots.push(format!(
                "area `{}` is frozen until {} ({})",
                f.area,
                f.until.format("%Y-%m-%dT%H:%MZ"),
                f.reason
            ));
            moves.push((85, format!("find out why area `{}` keeps failing before the freeze lifts: its fixes do not do what they predict", f.area)));
        }
        for (origin, validated, failed) in &track_record {
            if *failed >= 2 && *validated == 0 {
                moves.push((70, format!("revise or remove {origin}: {failed} finalized, none validated in five periods")));
            }
        }
        if let (Some(b), Some(bias)) = (calibration.brier, calibration.bias) {
            if b > 0.25 {
                moves.push((60, format!("stated confidences are worse than a coin flip (Brier {b:.2}); lower them or improve the proposers")));
            }
            if bias < -0.4 {
                moves.push((50, format!("effects undershoot predictions (median log realised/predicted {bias:+.2}); predict smaller changes")));
            }
        }
        if let Some(d) = drift(calibration.brier, previous.brier).filter(|d| *d > 0.05) {
            blind_spots.push(format!(
                "calibration got worse: Brier {:+.2} against the previous four periods",
                d
            ));
        }
        for (kind, n) in &trouble {
            match kind.as_str() {
                "sample_error" => moves.push((75, format!("fix the failing sources: {n} sampling gap(s) this period weaken every validation"))),
                "escalation" => moves.push((95, format!("{n} escalation(s) need a human (a revert refused, a reconcile failed): see `kaizen events --kind escalation`"))),
                "proposal_rejected" => blind_spots.push(format!("{n} LLM candidate(s) were rejected as invalid (see `kaizen events --kind proposal_rejected`)")),
                "proposer_error" => blind_spots.push(format!("a proposer failed {n} time(s) (see `kaizen events --kind proposer_error`)")),
                _ => {}
            }
        }
        moves.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(MetaReview {
            from,
            to,
            activity,
            brier_drift: drift(calibration.brier, previous.brier),
            bias_drift: drift(calibration.bias, previous.bias),
            calibration,
            previous,
            alerting,
            blocking_guards,
            trouble,
            track_record,
            blind_spots,
            next_moves: moves.into_iter().map(|(_, m)| m).collect(),
        })
    }

    /// A plain-text report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let fmt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "kaizen meta-review {} → {}",
            self.from.format("%Y-%m-%d %H:%M"),
            self.to.format("%Y-%m-%d %H:%M")
        );
        let a = &self.activity;
        let _ = writeln!(
            s,
            "activity: {} proposed ({} blocked, {} backlog), {} applied, {} validated, {} reverted",
            a.proposed, a.blocked, a.backlog, a.applied, a.validated, a.reverted
        );
        if a.suppressed_repeats > 0 {
            let _ = writeln!(
                s,
                "suppressed: {} repeat(s) of parked changes (frozen area, backlog, duplicate), counted on their rows",
                a.suppressed_repeats
            );
        }
        let c = &self.calibration;
        let _ = writeln!(
            s,
            "calibration: {} judged ({} decided) · Brier {} (previous 4: {}, drift {}) · interval coverage {} · bias {} (drift {})",
            c.n,
            c.decided,
            fmt(c.brier),
            fmt(self.previous.brier),
            fmt(self.brier_drift),
            fmt(c.coverage),
            fmt(c.bias),
            fmt(self.bias_drift)
        );
        for b in c.reliability.iter().filter(|b| b.n > 0) {
            let _ = writeln!(
                s,
                "  confidence {:.1}–{:.1}: {} judged, {} validated (observed {} , Wilson [{:.2}, {:.2}])",
                b.from,
                b.to,
                b.n,
                b.validated,
                fmt(b.observed),
                b.wilson.0,
                b.wilson.1
            );
        }
        if !self.alerting.is_empty() {
            let _ = writeln!(s, "alerting signals:");
            for a in &self.alerting {
                let _ = writeln!(
                    s,
                    "  {:<20} {:>5.1}% of samples past threshold, {} intervention(s)",
                    a.signal,
                    a.alert_share * 100.0,
                    a.interventions
                );
            }
        }
        if !self.blocking_guards.is_empty() {
            let list: Vec<String> = self
                .blocking_guards
                .iter()
                .map(|(g, n)| format!("{g} ×{n}"))
                .collect();
            let _ = writeln!(s, "blocked by: {}", list.join(", "));
        }
        if !self.track_record.is_empty() {
            let _ = writeln!(s, "track record (last five periods):");
            for (o, v, f) in &self.track_record {
                let _ = writeln!(s, "  {o:<32} {v} validated, {f} not");
            }
        }
        let _ = writeln!(s, "blind spots:");
        if self.blind_spots.is_empty() {
            let _ = writeln!(s, "  none found");
        }
        for b in &self.blind_spots {
            let _ = writeln!(s, "  - {b}");
        }
        let _ = writeln!(s, "next moves:");
        if self.next_moves.is_empty() {
            let _ = writeln!(s, "  nothing pressing");
        }
        for (i, m) in self.next_moves.iter().enumerate() {
            let _ = writeln!(s, "  {}. {m}", i + 1);
        }
        s
    }
}
