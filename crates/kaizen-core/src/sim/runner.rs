//! Running a scenario: write the repository, build an engine on a manual clock, advance time,
//! check the expectations.

use super::SimError;
use super::scenario::{ExpectationResult, Scenario};
use super::source::SimSource;
use crate::apply::Applier;
use crate::canary::{Canary, CanaryResult};
use crate::clock::ManualClock;
use crate::config::{Config, ScheduleConfig};
use crate::engine::{CycleReport, Engine, EngineSettings, SizingFn};
use crate::guard::Guard;
use crate::intervention::{Candidate, Intervention, InterventionId, Outcome, Status};
use crate::learn::DeterministicDistiller;
use crate::ledger::Ledger;
use crate::rules::{RulesProposer, load_rules};
use crate::runtime::{DistillLearner, Runtime, RuntimeError, TaskOutcome};
use crate::schedule::Schedule;
use crate::span::Span;
use crate::validate::{Validator, Verdict};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a prepared scenario lives under its work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The work directory.
    pub workdir: PathBuf,
    /// The simulated service's repository (`WORKDIR/repo`): open the applier here.
    pub repo: PathBuf,
    /// The generated `kaizen.yaml` (`WORKDIR/kaizen.yaml`, outside the repository).
    pub config: PathBuf,
    /// The generated `rules.yaml` (`WORKDIR/rules.yaml`).
    pub rules: PathBuf,
}

impl Layout {
    /// The layout under `workdir`.
    pub fn new(workdir: &Path) -> Self {
        Self {
            workdir: workdir.to_path_buf(),
            repo: workdir.join("repo"),
            config: workdir.join("kaizen.yaml"),
            rules: workdir.join("rules.yaml"),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a scenario's files under `workdir` (which must not yet hold a `repo` with files):
/// `repo/` with the scenario's initial files, `kaizen.yaml` and `rules.yaml` next to it.
///
/// With `init_git`, `repo/` becomes a git repository (branch `main`, the files in one initial
/// commit dated at the scenario start) through the `git` CLI, ready for a git applier:
///
/// ```text
/// let layout = prepare(&scenario, workdir, true)?;
/// let applier = GitApplier::open(&layout.repo, None)?;
/// let result = run_scenario(&scenario, workdir, Box::new(applier), validator, |r| ...).await?;
/// ```
pub fn prepare(scenario: &Scenario, workdir: &Path, init_git: bool) -> Result<Layout, SimError> {
    let layout = Layout::new(workdir);
    if layout.repo.exists()
        && std::fs::read_dir(&layout.repo)
            .map_err(io(&layout.repo))?
            .next()
            .is_some()
    {
        return Err(SimError::NotFresh {
            path: layout.repo.clone(),
        });
    }
    std::fs::create_dir_all(&layout.repo).map_err(io(&layout.repo))?;
    for (file, content) in &scenario.files {
        let path = layout.repo.join(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::write(&path, content).map_err(io(&path))?;
    }
    write_kaizen_files(scenario, &layout)?;
    if init_git {
        let date = scenario.start.format("%Y-%m-%dT%H:%M:%S+0000").to_string();
        git(&layout.repo, &["init", "-q", "-b", "main"], &date)?;
        git(&layout.repo, &["config", "user.name", "kaizen-sim"], &date)?;
        git(
            &layout.repo,
            &["config", "user.email", "kaizen-sim@example.invalid"],
            &date,
        )?;
        git(&layout.repo, &["add", "-A"], &date)?;
        git(
            &layout.repo,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!(
                    "simulated service: initial files of scenario {}",
                    scenario.name
                ),
            ],
            &date,
        )?;
    }
    Ok(layout)
}

fn write_kaizen_files(scenario: &Scenario, layout: &Layout) -> Result<(), SimError> {
    std::fs::create_dir_all(&layout.workdir).map_err(io(&layout.workdir))?;
    std::fs::write(&layout.config, &scenario.kaizen_yaml).map_err(io(&layout.config))?;
    std::fs::write(&layout.rules, &scenario.rules_yaml).map_err(io(&layout.rules))?;
    Ok(())
}

fn git(repo: &Path, args: &[&str], date: &str) -> Result<(), SimError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .output()
        .map_err(|e| SimError::Git {
            command: format!("git {}", args.join(" ")),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SimError::Git {
            command: format!("git {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Extra knobs for [`run_scenario_with`]; the defaults are what [`run_scenario`] uses.
#[derive(Default)]
pub struct SimOptions {
    /// The guard chain (default: the engine's, i.e. `guard::default_chain()`).
    pub guards: Option<Vec<Box<dyn Guard>>>,
    /// The ledger (default: in memory; give a file ledger to inspect the run with `kaizen show`).
    pub ledger: Option<Ledger>,
    /// Simulate this long instead of the scenario's duration (tests use shorter runs).
    pub duration: Option<Span>,
    /// The proposal-time window sizing check.
    pub sizing: Option<Box<SizingFn>>,
    /// The clock to drive (default: a new one). Share it with the applier so commits carry
    /// simulated times.
    pub clock: Option<ManualClock>,
}

/// One intervention of a run, as the result reports it.
#[derive(Debug, Clone, Serialize)]
pub struct InterventionReport {
    /// Its id.
    pub id: InterventionId,
    /// The rule that made it.
    pub rule: Option<String>,
    /// Its area.
    pub area: String,
    /// Its title.
    pub title: String,
    /// Final status.
    pub status: Status,
    /// Validation outcome, if decided.
    pub outcome: Option<Outcome>,
    /// The latest reason.
    pub reason: String,
    /// When proposed.
    pub created_at: DateTime<Utc>,
    /// When applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// When validated or reverted.
    pub finalized_at: Option<DateTime<Utc>>,
    /// The verdict with its figures.
    pub verdict: Option<Verdict>,
}

/// A periodic meta-review written during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewReport {
    /// When (simulated).
    pub at: DateTime<Utc>,
    /// The Markdown file (the HTML one is next to it), under the run's state dir.
    pub markdown: PathBuf,
    /// Its next moves, counted.
    pub next_moves: usize,
}

/// Summary figures of one simulated signal over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalFigures {
    /// The signal.
    pub signal: String,
    /// Samples recorded.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Mean over the first simulated day.
    pub first_day_mean: f64,
    /// Mean over the last simulated day.
    pub last_day_mean: f64,
}

/// What a scenario run did and whether its expectations held.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// Seed used.
    pub seed: u64,
    /// Simulated start.
    pub start: DateTime<Utc>,
    /// Simulated end.
    pub end: DateTime<Utc>,
    /// Simulated duration.
    pub simulated: Span,
    /// Engine cycles run.
    pub cycles: usize,
    /// Samples recorded (all signals).
    pub samples: usize,
    /// Every intervention, oldest first.
    pub interventions: Vec<InterventionReport>,
    /// Expectation results, in scenario order.
    pub expectations: Vec<ExpectationResult>,
    /// Areas seen frozen during the run.
    pub frozen_areas: Vec<String>,
    /// Per-signal figures.
    pub signals: Vec<SignalFigures>,
    /// A digest (FNV-1a, hex) of every recorded sample: equal digests = identical series.
    pub series_digest: String,
    /// Escalations raised by the engine.
    pub escalations: Vec<String>,
    /// One line per lesson change the scheduled learn runs made (`created L-…`, …).
    pub lessons: Vec<String>,
    /// The periodic meta-reviews the schedule wrote.
    pub reviews: Vec<ReviewReport>,
    /// Wall-clock time the run took, in milliseconds.
    pub wall_ms: u128,
}

impl ScenarioResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.expectations.iter().all(|e| e.held)
    }

    /// A compact, human-readable account (what the CLI prints).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {} (seed {}): {} simulated in {:.1}s — {} cycles, {} samples",
            self.name,
            self.seed,
            self.simulated,
            self.wall_ms as f64 / 1000.0,
            self.cycles,
            self.samples
        );
        let _ = writeln!(s, "signals:");
        for f in &self.signals {
            let _ = writeln!(
                s,
                "  {:<16} first day mean {:>10.2}  last day mean {:>10.2}  min {:>10.2}  max {:>10.2}",
                f.signal, f.first_day_mean, f.last_day_mean, f.min, f.max
            );
        }
        let _ = writeln!(s, "interventions:");
        let mut grouped: BTreeMap<(String, &'static str), (usize, &InterventionReport)> =
            BTreeMap::new();
        for iv in &self.interventions {
            if iv.applied_at.is_some() {
                let outcome = iv
                    .outcome
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| "undecided".into());
                let _ = writeln!(
                    s,
                    "  {} {} [{}] applied {} → {} ({}): {}",
                    iv.id,
                    iv.rule.as_deref().unwrap_or("-"),
                    iv.area,
                    iv.applied_at
                        .map(|t| t.format("%a %H:%M").to_string())
                        .unwrap_or_default(),
                    iv.status,
                    outcome,
                    clip(&iv.reason, 200)
                );
            } else {
                let e = grouped
                    .entry((
                        iv.rule.clone().unwrap_or_else(|| "-".into()),
                        iv.status.as_str(),
                    ))
                    .or_insert((0, iv));
                e.0 += 1;
            }
        }
        for ((rule, status), (n, first)) in &grouped {
            let _ = writeln!(
                s,
                "  {n}× {rule} [{}] {status} (first {} {}): {}",
                first.area,
                first.id,
                first.created_at.format("%a %H:%M"),
                clip(&first.reason, 200)
            );
        }
        if self.interventions.is_empty() {
            let _ = writeln!(s, "  none");
        }
        if !self.frozen_areas.is_empty() {
            let _ = writeln!(s, "frozen areas: {}", self.frozen_areas.join(", "));
        }
        for e in &self.escalations {
            let _ = writeln!(s, "ESCALATION: {e}");
        }
        let _ = writeln!(
            s,
            "lessons learned: {}",
            if self.lessons.is_empty() {
                "none".to_string()
            } else {
                self.lessons.len().to_string()
            }
        );
        for l in &self.lessons {
            let _ = writeln!(s, "  {}", clip(l, 200));
        }
        let _ = writeln!(s, "reviews written: {}", self.reviews.len());
        for r in &self.reviews {
            let _ = writeln!(
                s,
                "  {} ({} next move(s)): {}",
                r.at.format("%a %H:%M"),
                r.next_moves,
                r.markdown.display()
            );
        }
        let _ = writeln!(s, "expectations:");
        for e in &self.expectations {
            let _ = writeln!(
                s,
                "  [{}] {} — {}",
                if e.held { "ok" } else { "FAILED" },
                e.expectation,
                e.detail
            );
        }
        let held = self.expectations.iter().filter(|e| e.held).count();
        let _ = writeln!(
            s,
            "result: {} ({held}/{} expectations held)",
            if self.passed() { "PASS" } else { "FAIL" },
            self.expectations.len()
        );
        s
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

/// A canary for the simulator: runs the configured shell command in the repository (exit 0 =
/// pass; `true`/`false` declare the outcome), killed after its timeout (= fail).
struct SimCanary {
    area: String,
    command: String,
    timeout: Span,
    dir: PathBuf,
}

#[async_trait]
impl Canary for SimCanary {
    fn area(&self) -> &str {
        &self.area
    }

    async fn trial(&self, id: InterventionId, candidate: &Candidate) -> CanaryResult {
        let child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .current_dir(&self.dir)
            .env("KAIZEN_INTERVENTION", id.to_string())
            .env("KAIZEN_AREA", &candidate.area)
            .env("KAIZEN_TITLE", &candidate.title)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                return CanaryResult::Fail(format!(
                    "canary `{}` could not start: {e}",
                    self.command
                ));
            }
        };
        let deadline = Instant::now() + Duration::from_secs(self.timeout.seconds().max(1));
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {
                    return CanaryResult::Pass(format!("canary `{}` exited 0", self.command));
                }
                Ok(Some(status)) => {
                    return CanaryResult::Fail(format!(
                        "canary `{}` failed ({status})",
                        self.command
                    ));
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return CanaryResult::Fail(format!(
                        "canary `{}` timed out after {}",
                        self.command, self.timeout
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return CanaryResult::Fail(format!("canary `{}`: {e}", self.command)),
            }
        }
    }
}

/// Runs `scenario` under `workdir` with the default [`SimOptions`]; see [`run_scenario_with`].
pub async fn run_scenario(
    scenario: &Scenario,
    workdir: &Path,
    applier: Box<dyn Applier>,
    validator: Box<dyn Validator>,
    on_report: impl FnMut(&CycleReport),
) -> Result<ScenarioResult, SimError> {
    run_scenario_with(
        scenario,
        workdir,
        applier,
        validator,
        SimOptions::default(),
        on_report,
    )
    .await
}

/// Runs `scenario` under `workdir`.
///
/// If `WORKDIR/repo` does not exist, the scenario's files are written there first (no git: fine
/// for appliers that write files directly, such as [`super::DirectApplier`]); a caller using the
/// git applier calls [`prepare`] with `init_git = true` first and opens the applier on
/// [`Layout::repo`]. `kaizen.yaml` and `rules.yaml` are (re)written next to the repository.
///
/// The engine runs on a [`ManualClock`] from the scenario start: every `sample_every` it observes
/// (samples only); every `cycle_every` after the warmup it runs a full cycle (whose report goes to
/// `on_report`). At the end the expectations are checked against the ledger.
pub async fn run_scenario_with(
    scenario: &Scenario,
    workdir: &Path,
    applier: Box<dyn Applier>,
    validator: Box<dyn Validator>,
    mut options: SimOptions,
    mut on_report: impl FnMut(&CycleReport),
) -> Result<ScenarioResult, SimError> {
    let wall = Instant::now();
    let layout = Layout::new(workdir);
    if !layout.repo.exists() {
        prepare(scenario, workdir, false)?;
    } else {
        write_kaizen_files(scenario, &layout)?;
    }
    let config = Config::load(&layout.config)?;
    let known: BTreeSet<String> = config.signals.keys().cloned().collect();
    let rules = load_rules(&layout.rules, &known)?;

    let clock = options
        .clock
        .take()
        .unwrap_or_else(|| ManualClock::at(scenario.start));
    clock.set(scenario.start);
    let source = SimSource::new(
        scenario.host.clone(),
        &layout.repo,
        scenario.seed,
        scenario.start,
        scenario.sample_every,
    );
    let mut settings = EngineSettings::from_config(&config);
    settings.recent_window = scenario.recent_window;
    let canaries: Vec<Box<dyn Canary>> = config
        .canaries
        .iter()
        .map(|(area, c)| {
            Box::new(SimCanary {
                area: area.clone(),
                command: c.command.clone(),
                timeout: c.timeout,
                dir: layout.repo.clone(),
            }) as Box<dyn Canary>
        })
        .collect();
    let ledger = match options.ledger {
        Some(l) => l,
        None => Ledger::in_memory()?,
    };
    // A rule never fires on data older than two samples.
    let stale_after = Span::from_secs(scenario.sample_every.seconds() * 2);
    let mut builder = Engine::builder(settings)
        .clock(Arc::new(clock.clone()))
        .ledger(ledger)
        .source(Box::new(source))
        .proposer(Box::new(
            RulesProposer::new(rules, stale_after).with_diagnoser(Arc::new(
                super::diagnose::SimDiagnoser::new(
                    scenario.host.clone(),
                    layout.repo.clone(),
                    scenario.start,
                    clock.clone(),
                ),
            )),
        ))
        .applier(applier)
        .validator(validator)
        .canaries(canaries);
    builder = builder.guards(
        options
            .guards
            .unwrap_or_else(|| crate::guard::chain_for(config.envelope.as_ref())),
    );
    if let Some(s) = options.sizing {
        builder = builder.sizing(s);
    }
    let engine = builder.state_dir(&config.state_dir).build()?;

    // The runtime `kaizen run` uses, on the scenario's schedule: observe every sample, cycle
    // every `cycle_every` once the warmup is over, learn and review on their intervals. The
    // loop sleeps until the schedule's next due time; here the clock jumps there instead.
    let schedule = Schedule::new(ScheduleConfig {
        observe_every: scenario.sample_every,
        cycle_every: scenario.cycle_every,
        learn_every: scenario.learn_every,
        review_every: scenario.review_every,
    })
    .hold_cycles_until(scenario.warmup.after(scenario.start));
    let learner = DistillLearner::new(DeterministicDistiller::default(), &config.lessons);
    let (handle, mut worker) = Runtime::builder(engine, schedule)
        .learner(Arc::new(learner))
        .pair();
    worker.start().await?;

    let duration = options.duration.unwrap_or(scenario.duration);
    let end = duration.after(scenario.start);
    let track_freezes = scenario.expect.iter().any(|e| e.frozen.is_some());
    let mut frozen: BTreeSet<String> = BTreeSet::new();
    let mut cycles = 0usize;
    let mut samples = 0usize;
    let mut escalations = Vec::new();
    let mut lessons = Vec::new();
    let mut reviews = Vec::new();
    let mut now = scenario.start;
    loop {
        clock.set(now);
        for outcome in worker.run_due().await? {
            match outcome {
                TaskOutcome::Observed(n) => samples += n?,
                TaskOutcome::Cycled(report) => {
                    let report = report?;
                    cycles += 1;
                    samples += report.samples;
                    escalations.extend(report.escalations.iter().cloned());
                    on_report(&report);
                    if track_freezes && let Some(engine) = worker.engine() {
                        for f in engine.propose_context()?.freezes {
                            frozen.insert(f.area);
                        }
                    }
                }
                TaskOutcome::Learned(changes) => {
                    if let Some(changes) = changes {
                        lessons.extend(changes?);
                    }
                }
                TaskOutcome::Reviewed(written) => {
                    if let Some(w) = written? {
                        reviews.push(ReviewReport {
                            at: now,
                            markdown: w.markdown,
                            next_moves: w.next_moves,
                        });
                    }
                }
            }
        }
        // The observe ticks up to the next other task, in one hand-off to the engine's thread
        // (each tick the same step `run_due` runs; see `Worker::run_observe_ticks`).
        for (at, n) in worker.run_observe_ticks(&clock, end).await? {
            samples += n?;
            now = at;
        }
        let next = worker.next_due();
        if next > end {
            break;
        }
        // The schedule never stands still (every interval is positive); a clock that did would
        // loop forever, so step at least a second.
        now = next.max(now + chrono::Duration::seconds(1));
    }
    drop(handle);
    let engine = worker.engine().ok_or_else(|| {
        SimError::Runtime(RuntimeError::Panicked(
            "the engine was lost in a step".into(),
        ))
    })?;

    let end = clock.now_value();
    let ledger = engine.ledger();
    let all: Vec<Intervention> = ledger.all()?;
    let expectations = scenario
        .expect
        .iter()
        .map(|e| e.check(&all, &frozen))
        .collect();
    let mut interventions = Vec::with_capacity(all.len());
    for iv in &all {
        interventions.push(InterventionReport {
            id: iv.id,
            rule: iv.candidate.origin.rule.clone(),
            area: iv.candidate.area.clone(),
            title: iv.candidate.title.clone(),
            status: iv.status,
            outcome: iv.outcome,
            reason: iv.reason.clone(),
            created_at: iv.created_at,
            applied_at: iv.applied_at,
            finalized_at: iv.finalized_at,
            verdict: if iv.applied_at.is_some() {
                ledger.verdict(iv.id)?
            } else {
                None
            },
        });
    }
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    let mut signals = Vec::new();
    let day = chrono::Duration::days(1);
    for name in scenario.host.signals.keys() {
        let series = ledger.points(name, scenario.start, end)?;
        for (at, value) in &series {
            for b in at
                .timestamp_millis()
                .to_le_bytes()
                .into_iter()
                .chain(value.to_bits().to_le_bytes())
                .chain(name.bytes())
            {
                digest ^= u64::from(b);
                digest = digest.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        let mean = |xs: &mut dyn Iterator<Item = f64>| {
            let (n, sum) = xs.fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
            if n == 0 { f64::NAN } else { sum / n as f64 }
        };
        signals.push(SignalFigures {
            signal: name.clone(),
            n: series.len(),
            mean: mean(&mut series.iter().map(|p| p.1)),
            min: series.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
            max: series.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
            first_day_mean: mean(
                &mut series
                    .iter()
                    .filter(|p| p.0 < scenario.start + day)
                    .map(|p| p.1),
            ),
            last_day_mean: mean(&mut series.iter().filter(|p| p.0 > end - day).map(|p| p.1)),
        });
    }
    Ok(ScenarioResult {
        name: scenario.name.clone(),
        seed: scenario.seed,
        start: scenario.start,
        end,
        simulated: duration,
        cycles,
        samples,
        interventions,
        expectations,
        frozen_areas: frozen.into_iter().collect(),
        signals,
        series_digest: format!("{digest:016x}"),
        escalations,
        lessons,
        reviews,
        wall_ms: wall.elapsed().as_millis(),
    })
}

trait NowValue {
    fn now_value(&self) -> DateTime<Utc>;
}

impl NowValue for ManualClock {
    fn now_value(&self) -> DateTime<Utc> {
        crate::clock::Clock::now(self)
    }
}
