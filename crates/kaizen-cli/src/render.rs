//! Human-readable and JSON renderings of reports and interventions.

use chrono::{DateTime, Utc};
use kaizen_core::engine::CycleReport;
use kaizen_core::event::RecordedEvent as Event;
use kaizen_core::guard::{GuardVerdict, overall};
use kaizen_core::intervention::{Candidate, Intervention};
use kaizen_core::ledger::{Ledger, LedgerError};
use kaizen_core::validate::Verdict;

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

/// Prints an invariant check: one line per violation (repaired ones marked), then a verdict.
pub fn check(report: &kaizen_core::engine::CheckReport) {
    for v in &report.violations {
        let tag = if v.repaired { "repaired " } else { "VIOLATION" };
        println!("{tag} {} {}: {}", v.kind, v.subject, v.detail);
    }
    let open = report.open().count();
    if open == 0 {
        println!("check: every invariant holds");
    } else {
        println!("check: {open} violation(s) open");
    }
}

/// Prints a cycle report, one decision per line.
pub fn report(report: &CycleReport) {
    for line in &report.lines {
        let id = line
            .id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".repeat(8));
        println!("{} {id} {:<9} {}", ts(report.at), line.stage, line.text);
    }
    for e in &report.escalations {
        eprintln!("kaizen: ESCALATION: {e}");
    }
}

/// The one line a cycle that decided nothing prints: what it observed, that nothing was due,
/// and what is alerting ("observed 3 signals; nothing due; nothing alerting").
pub fn quiet_cycle(report: &CycleReport, status: &kaizen_core::status::StatusSnapshot) -> String {
    let observed = match report.samples {
        1 => "observed 1 signal".to_string(),
        n => format!("observed {n} signals"),
    };
    let alerting: Vec<String> = status
        .signals
        .iter()
        .filter(|s| s.alerting)
        .map(|s| {
            let held: Vec<String> = status
                .suppressed
                .iter()
                .filter(|r| r.suppression.signal == s.signal)
                .map(|r| {
                    format!(
                        "{} suppressed: {}{}",
                        r.suppression.name(),
                        r.suppression.by,
                        r.suppression
                            .until
                            .map(|u| format!(" until {}", ts(u)))
                            .unwrap_or_default()
                    )
                })
                .collect();
            if held.is_empty() {
                s.signal.clone()
            } else {
                format!("{} ({})", s.signal, held.join(", "))
            }
        })
        .collect();
    let alerting = if alerting.is_empty() {
        "nothing alerting".to_string()
    } else {
        format!("alerting: {}", alerting.join(", "))
    };
    format!("{observed}; nothing due; {alerting}")
}

/// Prints one ledger event (`kaizen events`, `kaizen run`).
pub fn event(e: &Event) {
    let id = e
        .intervention
        .map(|i| i.to_string())
        .unwrap_or_else(|| "-".repeat(8));
    println!(
        "{} {id} {:<9} {:<18} {}",
        ts(e.at),
        e.stage,
        e.kind,
        e.detail
    );
}

/// Prints candidates with what the guards would say.
pub fn candidates(list: &[(String, Candidate, Vec<GuardVerdict>)]) {
    if list.is_empty() {
        println!("no candidates: no rule fires and no other proposer suggested anything");
        return;
    }
    for (proposer, c, verdicts) in list {
        let (decision, reason) = overall(verdicts);
        println!("{} [{}] from {proposer}", c.title, c.area);
        if !c.origin.trigger.is_empty() {
            println!("  trigger:    {}", c.origin.trigger);
        }
        println!("  hypothesis: {}", c.hypothesis);
        for e in c.change_lines() {
            println!("  change:     {e}");
        }
        println!("  predicts:   {}", c.prediction);
        println!(
            "  risk {} · confidence {:.2} · rollback {}",
            c.risk,
            c.confidence,
            c.rollback.as_deref().unwrap_or("NONE")
        );
        println!("  guards now: {decision} — {reason}");
    }
}

/// One intervention as the JSON object `kaizen interventions --json` prints.
pub fn intervention_json(iv: &Intervention) -> serde_json::Value {
    serde_json::json!({
        "id": iv.id.to_string(),
        "status": iv.status.as_str(),
        "outcome": iv.outcome.map(|o| o.as_str()),
        "area": iv.candidate.area,
        "kind": iv.candidate.kind,
        "title": iv.candidate.title,
        "reason": iv.reason,
        "commit": iv.commit,
        "revert_commit": iv.revert_commit,
        "risk": iv.candidate.risk.to_string(),
        "confidence": iv.candidate.confidence,
        "prediction": iv.candidate.prediction.to_string(),
        "rollback": iv.candidate.rollback,
        "origin": iv.candidate.origin.to_string(),
        "rule": iv.candidate.origin.rule,
        "created_at": ts(iv.created_at),
        "applied_at": iv.applied_at.map(ts),
        "due_at": iv.due_at.map(ts),
        "finalized_at": iv.finalized_at.map(ts),
    })
}

/// A table of interventions.
pub fn intervention_table(list: &[Intervention]) {
    if list.is_empty() {
        println!("no interventions yet");
        return;
    }
    println!(
        "{:<9} {:<9} {:<12} {:<12} {:<10} TITLE / REASON",
        "ID", "STATUS", "OUTCOME", "AREA", "COMMIT"
    );
    for iv in list {
        println!(
            "{:<9} {:<9} {:<12} {:<12} {:<10} {}",
            iv.id.to_string(),
            iv.status.as_str(),
            iv.outcome.map(|o| o.as_str()).unwrap_or("-"),
            iv.candidate.area,
            iv.commit.as_deref().map(short).unwrap_or("-"),
            iv.candidate.title
        );
        println!("{:<56}└ {}", "", iv.reason);
    }
}

/// Everything recorded about one intervention.
pub struct Chain {
    iv: Intervention,
    guards: Vec<(DateTime<Utc>, GuardVerdict)>,
    events: Vec<Event>,
    verdict: Option<Verdict>,
    sizing: Option<serde_json::Value>,
    /// Repeats of this change recorded on it instead of as new interventions, and the last one.
    repeats: (u64, Option<DateTime<Utc>>),
    /// Its proposer's calibrated confidence now (autonomy earned from calibration).
    calibration: kaizen_core::calibrate::Calibration,
    /// How effects on the predicted signal are measured (to print an effect as a percentage
    /// only where it is a ratio).
    scale: Option<kaizen_core::config::Scale>,
    /// The commit's files and lines (from the repository), when it can be read.
    diffstat: Vec<kaizen_adapters::diffstat::FileStat>,
    /// The lessons whose evidence cites this intervention (the lesson it fed).
    fed: Vec<String>,
    /// Its switchback, if it entered (or was refused) one: the plan and every flip.
    switchback: Option<kaizen_core::ledger::Switchback>,
}

impl Chain {
    /// Reads it from the ledger.
    pub fn load(
        ledger: &Ledger,
        iv: Intervention,
        threshold: f64,
        scale: Option<kaizen_core::config::Scale>,
    ) -> Result<Chain, LedgerError> {
        let id = iv.id;
        let key = kaizen_core::calibrate::key_of(&iv);
        let record = kaizen_core::calibrate::track_records(&ledger.finalized()?, None)
            .remove(&key)
            .unwrap_or_default();
        Ok(Chain {
            diffstat: Vec::new(),
            fed: Vec::new(),
            scale,
            calibration: kaizen_core::calibrate::Calibration::new(
                &key,
                iv.candidate.confidence,
                record,
                threshold,
            ),
            guards: ledger.guard_verdicts(id)?,
            events: ledger.events_for(id)?,
            verdict: ledger.verdict(id)?,
            sizing: ledger.sizing(id)?,
            repeats: ledger.repeats(id)?,
            switchback: ledger.switchback(id)?,
            iv,
        })
    }

    /// Adds what the ledger does not hold: the commit's diff stat from `repo`, and the lessons
    /// in `lessons` whose evidence cites this intervention.
    pub fn with_repository(mut self, repo: &std::path::Path, lessons: &std::path::Path) -> Self {
        if let Some(sha) = &self.iv.commit {
            self.diffstat = kaizen_adapters::diffstat::diff_stat(repo, sha).unwrap_or_default();
        }
        let id = self.iv.id.to_string();
        if let Ok((list, _)) = kaizen_core::lesson::store::load(lessons) {
            self.fed = list
                .iter()
                .filter(|l| l.evidence.iter().any(|e| e.intervention == id))
                .map(|l| format!("{} v{}: prefer {}", l.id, l.version, l.prefer))
                .collect();
        }
        self
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = intervention_json(&self.iv);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "hypothesis".into(),
                self.iv.candidate.hypothesis.clone().into(),
            );
            obj.insert(
                "trigger".into(),
                self.iv.candidate.origin.trigger.clone().into(),
            );
            obj.insert(
                "change".into(),
                serde_json::to_value(&self.iv.candidate.change).unwrap_or_default(),
            );
            obj.insert(
                "change_lines".into(),
                self.iv.candidate.change_lines().into(),
            );
            let o = &self.iv.candidate.origin;
            if !o.resolved.is_empty() {
                obj.insert(
                    "resolved".into(),
                    serde_json::to_value(&o.resolved).unwrap_or_default(),
                );
            }
            if let Some(d) = &o.diagnosis {
                obj.insert("diagnosis".into(), d.clone());
            }
            if !o.escalate.is_empty() {
                obj.insert("escalate".into(), o.escalate.clone().into());
            }
            obj.insert(
                "cites".into(),
                serde_json::to_value(&self.iv.candidate.origin.cites).unwrap_or_default(),
            );
            obj.insert(
                "argues_against".into(),
                serde_json::to_value(&self.iv.candidate.origin.argues_against).unwrap_or_default(),
            );
            obj.insert(
                "guards".into(),
                serde_json::to_value(self.guards.iter().map(|(_, g)| g).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
            obj.insert(
                "canary".into(),
                self.canary()
                    .map(|(at, passed, message, figures)| {
                        serde_json::json!({
                            "at": at.to_rfc3339(),
                            "passed": passed,
                            "message": message,
                            "figures": figures,
                        })
                    })
                    .collect::<Vec<_>>()
                    .into(),
            );
            obj.insert(
                "verdict".into(),
                serde_json::to_value(&self.verdict).unwrap_or_default(),
            );
            obj.insert("sizing".into(), self.sizing.clone().unwrap_or_default());
            obj.insert(
                "calibration".into(),
                serde_json::to_value(&self.calibration).unwrap_or_default(),
            );
            obj.insert(
                "diffstat".into(),
                self.diffstat
                    .iter()
                    .map(|f| serde_json::json!({"path": f.path, "added": f.added, "removed": f.removed}))
                    .collect::<Vec<_>>()
                    .into(),
            );
            obj.insert("fed_lessons".into(), self.fed.clone().into());
            obj.insert("repeats".into(), self.repeats.0.into());
            obj.insert(
                "last_repeat_at".into(),
                self.repeats.1.map(|t| t.to_rfc3339()).into(),
            );
            obj.insert(
                "switchback".into(),
                serde_json::to_value(&self.switchback).unwrap_or_default(),
            );
            obj.insert(
                "events".into(),
                serde_json::to_value(&self.events).unwrap_or_default(),
            );
        }
        v
    }

    /// The switchback section of `kaizen show`: the plan, then one line per block (state,
    /// window, flip commit, measured value).
    fn print_switchback(&self) {
        use kaizen_core::ledger::SwitchbackState;
        let Some(sb) = &self.switchback else { return };
        let state = match sb.state {
            SwitchbackState::Running => "running",
            SwitchbackState::Finished => "finished",
            SwitchbackState::Stopped => "stopped",
            SwitchbackState::Refused => "refused",
        };
        println!("switchback: {state} (since {})", ts(sb.started_at));
        if !sb.why.is_empty() {
            println!("  why         {}", sb.why);
        }
        if let Some(p) = &sb.plan {
            println!(
                "  plan        {} blocks of {} (washout {}), correlation time {} at cadence {}; {}; seed {:#018x}",
                p.plan.blocks,
                p.plan.block,
                p.plan.washout,
                p.correlation,
                p.cadence,
                p.trigger,
                p.seed
            );
        }
        let n = sb.plan.as_ref().map_or(0, |p| p.plan.blocks);
        for b in &sb.blocks {
            let label = if b.index > n {
                "end".to_string()
            } else {
                format!("block {}", b.index)
            };
            let value = match (b.value, b.samples) {
                (Some(v), Some(k)) => {
                    format!("  value {} ({k} samples)", kaizen_core::human::opt(Some(v)))
                }
                (None, Some(k)) => format!("  value - ({k} samples)"),
                _ => String::new(),
            };
            let commit = match (&b.flip_commit, b.pending) {
                (Some(c), _) => format!("  flip {}", c.get(..10).unwrap_or(c)),
                (None, true) => "  flip in flight".to_string(),
                (None, false) => String::new(),
            };
            println!(
                "  {label:<9} {:<3} {} → {} (measured from {}){commit}{value}",
                if b.on { "on" } else { "off" },
                ts(b.starts_at),
                ts(b.ends_at),
                ts(b.measure_from)
            );
        }
    }

    /// Its canary trials, in order: when, whether it passed, what it said, its figures.
    fn canary(
        &self,
    ) -> impl Iterator<
        Item = (
            chrono::DateTime<chrono::Utc>,
            bool,
            &str,
            Option<&serde_json::Value>,
        ),
    > {
        use kaizen_core::event::EngineEvent;
        self.events.iter().filter_map(|e| match &e.event {
            EngineEvent::CanaryPassed {
                message, figures, ..
            } => Some((e.at, true, message.as_str(), figures.as_ref())),
            EngineEvent::CanaryFailed {
                message, figures, ..
            } => Some((e.at, false, message.as_str(), figures.as_ref())),
            _ => None,
        })
    }

    /// Prints it for a human.
    pub fn print(&self) {
        let iv = &self.iv;
        let c = &iv.candidate;
        println!("{}  {}", iv.id, c.title);
        println!(
            "  status      {}{}",
            iv.status,
            iv.outcome
                .map(|o| format!(" (outcome: {o})"))
                .unwrap_or_default()
        );
        println!("  reason      {}", kaizen_core::human::once(&iv.reason));
        println!(
            "  area/kind   {} / {}   risk {}   confidence {}",
            c.area,
            c.kind,
            c.risk,
            kaizen_core::human::prob(c.confidence)
        );
        println!("  origin      {}", c.origin);
        println!(
            "  autonomy    {} (its proposer's record now)",
            self.calibration.verdict()
        );
        if !c.origin.trigger.is_empty() {
            println!("  trigger     {}", c.origin.trigger);
        }
        if let Some(d) = &c.origin.diagnosis {
            println!("  diagnosis   confirmed; facts {d}");
        }
        println!("  hypothesis  {}", c.hypothesis);
        for cite in &c.origin.cites {
            println!("  cites       {cite}");
        }
        for a in &c.origin.argues_against {
            println!("  argues      against {}: {}", a.lesson, a.why);
        }
        for e in c.change_lines() {
            println!("  change      {e}");
        }
        println!("  prediction  {}", c.prediction);
        if !c.origin.escalate.is_empty() {
            println!(
                "  escalate    {} (if the fix fails)",
                c.origin.escalate.join(", ")
            );
        }
        println!(
            "  rollback    {}",
            c.rollback.as_deref().unwrap_or("(none)")
        );
        // In the order it happened: trigger, hypothesis, lessons, change and prediction, the
        // guards' verdicts (canary included), the commit, the looks, the verdict, the lesson fed.
        if !self.guards.is_empty() {
            println!("guards:");
            for (at, g) in &self.guards {
                println!(
                    "  {} {:<8} {:<16} {}",
                    ts(*at),
                    g.decision.to_string(),
                    g.guard,
                    g.reason
                );
            }
        }
        let mut canary = self.canary().peekable();
        if canary.peek().is_some() {
            println!("canary:");
        }
        for (at, passed, message, figures) in canary {
            println!(
                "  {} {:<8} {}",
                ts(at),
                if passed { "pass" } else { "fail" },
                kaizen_core::human::once(message)
            );
            if let Some(f) = figures {
                for line in kaizen_core::canary::figures_lines(f).lines() {
                    println!("             {line}");
                }
            }
        }
        if let Some(commit) = &iv.commit {
            println!("applied:");
            println!(
                "  commit      {commit}{}",
                iv.applied_at
                    .map(|t| format!("  (applied {})", ts(t)))
                    .unwrap_or_default()
            );
            for f in &self.diffstat {
                println!("              {} | +{} −{}", f.path, f.added, f.removed);
            }
        }
        if let Some(due) = iv.due_at {
            println!("  due         {}", ts(due));
        }
        if let Some(r) = &iv.revert_commit {
            println!("  reverted by {r}");
        }
        if let Some(s) = &self.sizing
            && let Some(note) = s.get("note").and_then(|n| n.as_str())
        {
            println!("  sizing      {note}");
        }
        if self.repeats.0 > 0 {
            println!(
                "  repeats     {} (proposed again while parked; last {})",
                self.repeats.0,
                self.repeats.1.map(ts).unwrap_or_default()
            );
        }
        self.print_switchback();
        if let Some(v) = &self.verdict {
            let f = &v.figures;
            println!(
                "verdict: {} — {}",
                v.outcome,
                kaizen_core::human::once(&v.summary)
            );
            // The gap figures the decision used, counted at the cadence it used.
            println!(
                "  method {} · n before {} · n after {} · gaps {} of {} baseline, {} of {} post{}",
                if f.method.is_empty() { "-" } else { &f.method },
                f.n_before,
                f.n_after,
                f.gaps_before,
                f.expected_before,
                f.gaps,
                f.expected_after,
                f.cadence
                    .map(|c| format!(" · cadence {c}"))
                    .unwrap_or_default()
            );
            if let Some(why) = &f.cannot_judge {
                println!(
                    "  {why} (decided by the data, not the change: no freeze count, no lesson)"
                );
            }
            use kaizen_core::human::{opt, pct_interval};
            // On a ratio scale the estimate is a relative change: say it in percent.
            let relative = match self.scale {
                Some(kaizen_core::config::Scale::Log) => true,
                Some(kaizen_core::config::Scale::Linear) | None => false,
                Some(kaizen_core::config::Scale::Auto) => {
                    f.baseline.is_some_and(|b| b > 0.0) && f.post.is_some_and(|p| p > 0.0)
                }
            };
            let effect = match f.estimate {
                Some(e) if relative => pct_interval(e, f.lower, f.upper),
                e => format!("{} [{}, {}]", opt(e), opt(f.lower), opt(f.upper)),
            };
            println!(
                "  baseline {} · post {} · effect {}{}",
                opt(f.baseline),
                opt(f.post),
                effect,
                f.level
                    .map(|l| format!(" at {:.0}%", l * 100.0))
                    .unwrap_or_default()
            );
            if let Some(met) = f.magnitude_met {
                println!(
                    "  predicted magnitude {}",
                    if met { "met" } else { "undershot" }
                );
            }
            for n in &f.notes {
                println!("  note: {n}");
            }
        }
        for l in &self.fed {
            println!("  fed lesson  {l}");
        }
        println!("timeline:");
        for e in &self.events {
            let text = e
                .event
                .transition_text()
                .unwrap_or_else(|| e.detail.clone());
            println!("  {} {:<9} {:<18} {}", ts(e.at), e.stage, e.kind, text);
        }
    }
}

/// `kaizen status` for a person.
pub fn status(s: &kaizen_core::status::StatusSnapshot) {
    let t = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    println!(
        "kaizen at {} — mode {}, repo {}",
        t(s.at),
        format!("{:?}", s.mode).to_lowercase(),
        // `./.` (config dir joined with `repo: .`) reads as the path it is.
        std::path::Path::new(&s.repo)
            .components()
            .collect::<std::path::PathBuf>()
            .display()
    );
    if let Some(p) = &s.paused.global {
        println!(
            "PAUSED: {} (nothing is applied; `kaizen resume` lifts it)",
            p.why
        );
    }
    for (area, p) in &s.paused.areas {
        println!("paused: area `{area}`: {}", p.why);
    }
    println!("signals:");
    if s.signals.is_empty() {
        println!("  none configured");
    }
    for sig in &s.signals {
        let value = sig
            .value
            .map(|v| format!("{} {}", kaizen_core::human::sig3(v), sig.unit))
            .unwrap_or_else(|| "no sample yet".into());
        let at = sig.at.map(|a| format!(" at {}", t(a))).unwrap_or_default();
        let alert = if sig.alerting { "  ALERT" } else { "" };
        let fallback = if sig.cadence_source == kaizen_core::validate::CadenceSource::Fallback {
            " (default; too few samples to tell)"
        } else {
            ""
        };
        println!(
            "  {:<20} {value}{at}{alert} · cadence {}{fallback}",
            sig.signal, sig.cadence
        );
        if let Some(w) = &sig.cadence_warning {
            println!("    warning: {w}");
        }
    }
    println!("awaiting validation: {}", s.awaiting_validation.len());
    for a in &s.awaiting_validation {
        let when = match &a.held_by {
            Some(why) => format!("held for a human: {why} (`kaizen resolve {}`)", a.id),
            None => format!(
                "due {}",
                a.due_at.map(t).unwrap_or_else(|| "once pushed".to_string())
            ),
        };
        println!("  {} [{}] {} — {when}", a.id, a.area, a.title);
    }
    if let Some(p) = &s.publish {
        let last = p
            .last_pushed_at
            .map(|at| format!(", last push {}", t(at)))
            .unwrap_or_default();
        println!(
            "remote `{}`: {} waiting for a push{last}",
            p.remote,
            p.awaiting_push.len()
        );
        if p.consecutive_failures > 0 {
            println!(
                "  {} failed push(es) in a row; next try {}: {}",
                p.consecutive_failures,
                p.next_attempt_at
                    .map(t)
                    .unwrap_or_else(|| "next cycle".into()),
                p.last_error.as_deref().unwrap_or("")
            );
        }
    }
    for f in &s.frozen {
        println!(
            "frozen: area `{}` until {} ({})",
            f.area,
            t(f.until),
            f.reason
        );
    }
    println!("daily budget: {} of {} left", s.budget_left, s.daily_budget);
    println!("backlog: {} (need a canary)", s.backlog);
    if !s.repeated.is_empty() {
        println!(
            "suppressed repeats in the last 24h: {} (counted on the parked change, not recorded anew)",
            s.suppressed_repeats_24h
        );
        for r in &s.repeated {
            println!(
                "  {} [{}] {} repeat(s), last {}",
                r.id,
                r.area,
                r.repeats,
                t(r.last_seen)
            );
        }
    }
    for r in &s.suppressed {
        let x = &r.suppression;
        println!(
            "{}: {}, suppressed: {}{} ({}× since {}, last {}): {}",
            x.name(),
            if r.alerting {
                "alerting"
            } else {
                "not alerting now"
            },
            x.by,
            x.until
                .map(|u| format!(" until {}", t(u)))
                .unwrap_or_default(),
            x.count,
            t(x.since),
            t(x.last_seen),
            x.detail
        );
    }
    if !s.escalations_open.is_empty() {
        println!(
            "open escalations: {} (each needs a human: fix it, then `kaizen resolve ID --why …`)",
            s.escalations_open.len()
        );
        for e in &s.escalations_open {
            println!(
                "  {} `{}` since {} (told {}×, next reminder {}): {}",
                e.intervention
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.key,
                t(e.opened_at),
                e.notifications,
                t(e.next_reminder_at),
                e.detail
            );
        }
    }
    if !s.autonomy.is_empty() {
        println!("autonomy (calibrated confidence; below the threshold a human approves):");
        for c in &s.autonomy {
            println!("  {c}");
        }
    }
    if s.escalations_24h > 0 {
        println!(
            "escalations in the last 24h: {} (see `kaizen events --kind escalation`)",
            s.escalations_24h
        );
    }
}
