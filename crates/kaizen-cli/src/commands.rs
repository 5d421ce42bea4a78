//! Subcommand implementations: thin wrappers over `kaizen-core` and `kaizen-adapters`.

use crate::context::{
    Failure, Result, engine, engine_for_revert, lessons_and_errors, load_config, lock, lock_within,
    rt, usage,
};
use crate::render;
use crate::{Cli, Command};
use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use kaizen_adapters::assemble;
use kaizen_core::clock::{Clock, ManualClock, SystemClock};
use kaizen_core::config::{Config, DEFAULT_CONFIG};
use kaizen_core::engine::{CycleReport, Engine};
use kaizen_core::intervention::{InterventionId, Status};
use kaizen_core::ledger::Ledger;
use std::path::Path;
use std::sync::Arc;

fn clock_for(now: Option<&str>) -> Result<Arc<dyn Clock>> {
    match now {
        None => Ok(Arc::new(SystemClock)),
        Some(text) => {
            let at: DateTime<Utc> = DateTime::parse_from_rfc3339(text.trim())
                .map_err(|e| {
                    usage(format!(
                        "--now {text:?} is not an RFC 3339 instant (e.g. 2026-11-23T10:00:00Z): {e}"
                    ))
                })?
                .with_timezone(&Utc);
            Ok(Arc::new(ManualClock::at(at)))
        }
    }
}

fn parse_id(text: &str) -> Result<InterventionId> {
    text.parse()
        .map_err(|e: kaizen_core::intervention::IdError| usage(e.to_string()))
}

/// Who a human is, for the record: `$USER`, else the repository's git `user.name`.
fn who_am_i(repo: &Path) -> String {
    if let Some(u) = std::env::var("USER").ok().filter(|u| !u.trim().is_empty()) {
        return u;
    }
    std::process::Command::new("git")
        .args(["config", "user.name"])
        .current_dir(repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The engine on a read-only ledger (an in-memory one when there is none yet): for commands
/// that only look. Lesson files that cannot be loaded are skipped (not recorded: nothing is).
fn engine_read_only(config: &Config, clock: Arc<dyn Clock>) -> Result<Engine> {
    let (lessons, _errors) = lessons_and_errors(&config.lessons);
    let ledger = match open_ledger_read(config)? {
        Some(l) => l,
        None => Ledger::in_memory().map_err(rt)?,
    };
    assemble::builder_with_ledger(config, clock, lessons, ledger)
        .and_then(|b| b.build().map_err(Into::into))
        .map_err(|e| {
            if e.is_config() {
                usage(e.to_string())
            } else {
                Failure::Runtime(anyhow!(e))
            }
        })
}

fn print_report(report: &CycleReport, json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).context("serialising the report")?
        );
    } else {
        render::report(report);
    }
    Ok(())
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let clock = clock_for(cli.now.as_deref())?;
    match cli.command {
        Command::Init { force } => init(&cli.config, force),
        Command::Status { json } => {
            let config = load_config(&cli.config)?;
            let ledger = match open_ledger_read(&config)? {
                Some(l) => l,
                None => Ledger::in_memory().map_err(rt)?,
            };
            let status = kaizen_core::status::StatusSnapshot::compute(
                &ledger,
                &kaizen_core::engine::EngineSettings::from_config(&config),
                Some(&config.state_dir),
                clock.now(),
            )
            .map_err(rt)?;
            // Lesson files that failed to load are skipped by the loop; say so where people look.
            let mut status = status;
            status.invalid_lessons = kaizen_core::lesson::store::load(&config.lessons)
                .map(|(_, errors)| errors)
                .unwrap_or_default()
                .iter()
                .map(|e| kaizen_core::status::InvalidLesson {
                    file: e.file.display().to_string(),
                    error: e.to_string(),
                })
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).context("serialising")?
                );
            } else {
                render::status(&status);
                // A failing source's last value is not current: say so (issue 10).
                if let Ok(health) = kaizen_core::health::Health::compute(&status, &ledger) {
                    crate::service::print_stale_warnings(&health);
                }
                if !status.invalid_lessons.is_empty() {
                    println!(
                        "invalid lesson files (skipped): {} (see `kaizen events --kind {}`)",
                        status.invalid_lessons.len(),
                        assemble::LESSON_INVALID
                    );
                    for l in &status.invalid_lessons {
                        println!("  {}", l.error);
                    }
                }
            }
            Ok(())
        }
        Command::Observe { wait } => {
            let config = load_config(&cli.config)?;
            let wait: kaizen_core::span::Span = wait
                .parse()
                .map_err(|e: kaizen_core::span::SpanError| usage(format!("--wait: {e}")))?;
            let wait = std::time::Duration::from_secs(wait.seconds().min(3600));
            let _lock = lock_within(&config, wait)?;
            let mut engine = engine(&config, clock)?;
            let mut report = CycleReport {
                at: engine.now(),
                ..Default::default()
            };
            let n = engine.observe(&mut report).await.map_err(rt)?;
            render::report(&report);
            println!(
                "recorded {n} sample(s) at {}",
                report.at.format("%Y-%m-%dT%H:%M:%SZ")
            );
            for (name, _) in config.signals.iter() {
                if let Some(s) = engine.ledger().latest_sample(name).map_err(rt)?
                    && s.at == report.at
                {
                    let sig = &config.signals[name].signal;
                    let alert = if sig.is_alerting(s.value) {
                        "  ALERT"
                    } else {
                        ""
                    };
                    println!("  {name} = {} {}{alert}", s.value, sig.unit);
                }
            }
            Ok(())
        }
        Command::Propose { json } => {
            let config = load_config(&cli.config)?;
            // Applies nothing and records nothing: no state lock, a read-only ledger, so it
            // works beside `kaizen run`.
            let engine = engine_read_only(&config, clock)?;
            let (candidates, notes) = engine.collect_proposals().await.map_err(rt)?;
            let mut report = CycleReport::default();
            for n in notes {
                report.lines.push(kaizen_core::engine::ReportLine {
                    id: None,
                    stage: "propose",
                    text: format!("{}: {n}", n.kind()),
                });
            }
            let mut out = Vec::new();
            for (proposer, c) in candidates {
                use kaizen_core::engine::Resolution;
                let (c, verdicts) = match engine.resolve(c) {
                    Resolution::Ready(c) => {
                        let v = engine.dry_guards(&c).map_err(rt)?;
                        (c, v)
                    }
                    Resolution::AlreadyApplied(c) => {
                        let v = vec![kaizen_core::guard::GuardVerdict {
                            guard: "already_applied".into(),
                            decision: kaizen_core::guard::Decision::Block,
                            reason: "the repository already holds this change (nothing to do)"
                                .into(),
                        }];
                        (c, v)
                    }
                    Resolution::Unresolvable(c, why) => {
                        let mut v = engine.dry_guards(&c).map_err(rt)?;
                        v.push(kaizen_core::guard::GuardVerdict {
                            guard: "resolve".into(),
                            decision: kaizen_core::guard::Decision::Block,
                            reason: why,
                        });
                        (c, v)
                    }
                };
                out.push((proposer, c, verdicts));
            }
            if json {
                let arr: Vec<serde_json::Value> = out
                    .iter()
                    .map(|(p, c, v)| {
                        let (d, reason) = kaizen_core::guard::overall(v);
                        serde_json::json!({"proposer": p, "candidate": c, "guards": v, "decision": d, "reason": reason})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&arr).context("serialising")?
                );
            } else {
                for line in &report.lines {
                    println!("{}", line.text);
                }
                render::candidates(&out);
            }
            Ok(())
        }
        Command::Cycle { json } => {
            let config = load_config(&cli.config)?;
            let _lock = lock(&config)?;
            let mut engine = engine(&config, clock)?;
            let report = engine.cycle().await.map_err(rt)?;
            print_report(&report, json)?;
            if !json && report.lines.is_empty() && report.escalations.is_empty() {
                // A quiet cycle still says what it looked at, so "nothing printed" never has
                // to be read as "did it run?".
                let status = engine.status().map_err(rt)?;
                println!("{}", render::quiet_cycle(&report, &status));
            }
            Ok(())
        }
        Command::Check { json, no_repair } => {
            let config = load_config(&cli.config)?;
            let _lock = lock(&config)?;
            let mut engine = engine(&config, clock)?;
            let report = engine.check(!no_repair).map_err(rt)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("serialising the report")?
                );
            } else {
                render::check(&report);
            }
            let open = report.open().count();
            if open > 0 {
                return Err(Failure::Runtime(anyhow!(
                    "{open} invariant violation(s) open (listed above)"
                )));
            }
            Ok(())
        }
        Command::Run { listen } => {
            if cli.now.is_some() {
                return Err(usage(
                    "`run` follows the wall clock; --now/KAIZEN_NOW make no sense for a daemon (use `kaizen sim` to simulate)",
                ));
            }
            crate::service::daemon(&cli.config, listen.as_deref()).await
        }
        Command::Health { json } => {
            let config = load_config(&cli.config)?;
            let ledger = match open_ledger_read(&config)? {
                Some(l) => l,
                None => Ledger::in_memory().map_err(rt)?,
            };
            let health = crate::service::health_from_ledger(&config, &ledger, clock.as_ref())?;
            crate::service::print_health(&health, json)
        }
        Command::Interventions { json, status } => {
            let config = load_config(&cli.config)?;
            let status: Option<Status> = status.map(|s| s.parse().map_err(usage)).transpose()?;
            let ledger = open_ledger_read(&config)?;
            let mut all = match &ledger {
                Some(l) => l.all().map_err(rt)?,
                None => Vec::new(),
            };
            if let Some(st) = status {
                all.retain(|i| i.status == st);
            }
            if json {
                let arr: Vec<serde_json::Value> =
                    all.iter().map(render::intervention_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&arr).context("serialising")?
                );
            } else {
                render::intervention_table(&all);
            }
            Ok(())
        }
        Command::Events { since, kind, json } => {
            let config = load_config(&cli.config)?;
            let since: kaizen_core::span::Span = since
                .parse()
                .map_err(|e: kaizen_core::span::SpanError| usage(e.to_string()))?;
            let now = clock.now();
            let mut events = match open_ledger_read(&config)? {
                Some(l) => l.events_between(since.before(now), now).map_err(rt)?,
                None => Vec::new(),
            };
            if let Some(k) = &kind {
                events.retain(|e| &e.kind == k);
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&events).context("serialising")?
                );
            } else {
                for e in &events {
                    render::event(e);
                }
            }
            Ok(())
        }
        Command::Show { id, json } => {
            let config = load_config(&cli.config)?;
            let id = parse_id(&id)?;
            let ledger = open_ledger_read(&config)?
                .ok_or_else(|| usage(format!("no intervention {id} (the ledger is empty)")))?;
            let iv = match ledger.get(id) {
                Ok(iv) => iv,
                Err(kaizen_core::ledger::LedgerError::NotFound(_)) => {
                    return Err(usage(format!("no intervention {id}")));
                }
                Err(e) => return Err(Failure::Runtime(anyhow!(e))),
            };
            let scale = config
                .signals
                .get(&iv.candidate.prediction.signal)
                .map(|s| s.scale);
            let chain = render::Chain::load(&ledger, iv, config.confidence_threshold, scale)
                .map_err(rt)?
                .with_repository(&config.repo, &config.lessons);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&chain.to_json()).context("serialising")?
                );
            } else {
                chain.print();
            }
            Ok(())
        }
        Command::Revert { id, reason } => {
            let config = load_config(&cli.config)?;
            let id = parse_id(&id)?;
            let _lock = lock(&config)?;
            let mut engine = engine_for_revert(&config, clock)?;
            match engine.revert(id, &reason) {
                Ok(report) => {
                    engine.notify(&report).await.map_err(rt)?;
                    print_report(&report, false)
                }
                Err(kaizen_core::engine::EngineError::Ledger(
                    kaizen_core::ledger::LedgerError::NotFound(_),
                )) => Err(usage(format!("no intervention {id}"))),
                Err(e @ kaizen_core::engine::EngineError::Refused { .. }) => {
                    Err(Failure::Runtime(anyhow!(e)))
                }
                Err(e) => Err(Failure::Runtime(anyhow!(e))),
            }
        }
        Command::Resolve {
            id,
            why,
            reverted,
            kept: _,
        } => {
            let config = load_config(&cli.config)?;
            let id = parse_id(&id)?;
            let end = if reverted {
                kaizen_core::escalation::HumanEnd::Reverted
            } else {
                kaizen_core::escalation::HumanEnd::Kept
            };
            let who = who_am_i(&config.repo);
            match lock(&config) {
                Ok(_lock) => {
                    let mut engine = engine(&config, clock)?;
                    let mut report = CycleReport {
                        at: engine.now(),
                        ..Default::default()
                    };
                    match engine.resolve_by_human(id, end, &who, &why, &mut report) {
                        Ok(_) => print_report(&report, false),
                        Err(kaizen_core::engine::EngineError::Ledger(
                            kaizen_core::ledger::LedgerError::NotFound(_),
                        )) => Err(usage(format!("no intervention {id}"))),
                        Err(e) => Err(Failure::Runtime(anyhow!(e))),
                    }
                }
                Err(Failure::Busy(_)) => {
                    // `kaizen run` holds the lock: queue it (one SQLite transaction) for the
                    // loop, which checks it against git at its next cycle.
                    let mut ledger = Ledger::open(&config.ledger_path()).map_err(rt)?;
                    let iv = match ledger.get(id) {
                        Ok(iv) => iv,
                        Err(kaizen_core::ledger::LedgerError::NotFound(_)) => {
                            return Err(usage(format!("no intervention {id}")));
                        }
                        Err(e) => return Err(rt(e)),
                    };
                    if !matches!(iv.status, Status::Applied | Status::Validated) {
                        return Err(Failure::Runtime(anyhow!(
                            "{id} is {}; only applied or validated interventions can be resolved",
                            iv.status
                        )));
                    }
                    ledger
                        .request_resolve(id, end, &who, &why, clock.now())
                        .map_err(rt)?;
                    println!(
                        "{id}: `kaizen run` holds the state lock; the resolve is queued and carried \
                         out at its next cycle (see `kaizen show {id}`)"
                    );
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Command::Pause { area, why } => {
            let config = load_config(&cli.config)?;
            // No state lock: an emergency stop must work while a daemon holds it.
            let mut ledger = Ledger::open(&config.ledger_path()).map_err(rt)?;
            kaizen_core::engine::pause_recorded(
                &mut ledger,
                &config.state_dir,
                area.as_deref(),
                &why,
                clock.now(),
            )
            .map_err(|e| match e {
                kaizen_core::engine::EngineError::Pause(p) => usage(p.to_string()),
                other => rt(other),
            })?;
            match &area {
                None => println!("paused: nothing will be applied until `kaizen resume`"),
                Some(a) => println!(
                    "paused area `{a}`: nothing there will be applied until `kaizen resume --area {a}`"
                ),
            }
            Ok(())
        }
        Command::Resume { area } => {
            let config = load_config(&cli.config)?;
            let mut ledger = Ledger::open(&config.ledger_path()).map_err(rt)?;
            let was = kaizen_core::engine::resume_recorded(
                &mut ledger,
                &config.state_dir,
                area.as_deref(),
                clock.now(),
            )
            .map_err(|e| match e {
                kaizen_core::engine::EngineError::Pause(p) => usage(p.to_string()),
                other => rt(other),
            })?;
            let scope = area.map_or("kaizen".to_string(), |a| format!("area `{a}`"));
            if was {
                println!("resumed {scope}");
            } else {
                println!("{scope} was not paused");
            }
            Ok(())
        }
        Command::Apply { id } => {
            let config = load_config(&cli.config)?;
            let id = parse_id(&id)?;
            let _lock = lock(&config)?;
            let mut engine = engine(&config, clock)?;
            let report = engine.approve(id).await.map_err(rt)?;
            engine.notify(&report).await.map_err(rt)?;
            print_report(&report, false)?;
            if report.applied.contains(&id) {
                Ok(())
            } else {
                Err(Failure::Runtime(anyhow!("{id} was not applied")))
            }
        }
        Command::Audit { command } => crate::audit::run(command, &cli.config, clock),
        Command::Lessons { command } => crate::lessons::run(command, &cli.config, clock).await,
        Command::Learn { json, llm } => crate::lessons::learn(&cli.config, clock, json, llm).await,
        Command::Review {
            period,
            format,
            json,
            output,
        } => {
            let config = load_config(&cli.config)?;
            let period: kaizen_core::span::Span = period
                .parse()
                .map_err(|e: kaizen_core::span::SpanError| usage(e.to_string()))?;
            let format: kaizen_core::review::Format = if json {
                kaizen_core::review::Format::Json
            } else {
                format.parse().map_err(usage)?
            };
            // Only reads: no state lock, a read-only ledger (works beside `kaizen run`); the
            // scheduled review the runtime writes is the one recorded in the ledger.
            let ledger = match open_ledger_read(&config)? {
                Some(l) => l,
                None => Ledger::in_memory().map_err(rt)?,
            };
            let now = clock.now();
            let review = kaizen_core::review::MetaReview::compute(
                &ledger,
                review_inputs(&config),
                now,
                period,
            )
            .map_err(rt)?;
            let text = review.render_as(format);
            match &output {
                Some(path) => {
                    std::fs::write(path, &text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote {}", path.display());
                }
                None => {
                    print!("{text}");
                    if !text.ends_with('\n') {
                        println!();
                    }
                }
            }
            Ok(())
        }
        Command::Diagnose { json } => {
            let config = load_config(&cli.config)?;
            let Some(llm) = config.llm.clone() else {
                return Err(usage(format!(
                    "{}: diagnose needs an `llm` section",
                    config.path.display()
                )));
            };
            let _lock = lock(&config)?;
            let mut engine = engine(&config, clock)?;
            let ctx = engine.propose_context().map_err(rt)?;
            match kaizen_adapters::llm::diagnose(&llm, &ctx).await {
                Ok(d) => {
                    let data = serde_json::to_value(&d).context("serialising")?;
                    let detail = format!(
                        "{} hypothesis(es) from {} for {}",
                        d.hypotheses.len(),
                        d.model,
                        d.signals.join(", ")
                    );
                    engine
                        .record(&kaizen_core::event::EngineEvent::Diagnosis {
                            summary: detail,
                            diagnosis: data.clone(),
                        })
                        .map_err(rt)?;
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&data).context("serialising")?
                        );
                    } else {
                        print!("{d}");
                    }
                    Ok(())
                }
                Err(e) => {
                    let recorded =
                        engine.record(&kaizen_core::event::EngineEvent::DiagnoseFailed {
                            message: e.to_string(),
                        });
                    match recorded {
                        Ok(()) => Err(Failure::Runtime(anyhow!("diagnose failed: {e}"))),
                        Err(r) => Err(Failure::Runtime(anyhow!(
                            "diagnose failed: {e} (and it could not be recorded: {r})"
                        ))),
                    }
                }
            }
        }
        Command::Demo { keep } => crate::commands::demo(keep).await,
        Command::Sim {
            files,
            verbose_decisions,
            json,
            in_memory_ledger,
        } => crate::commands::sim(&files, verbose_decisions, json, in_memory_ledger).await,
    }
}

fn open_ledger_read(config: &Config) -> Result<Option<Ledger>> {
    let path = config.ledger_path();
    if !path.exists() {
        return Ok(None);
    }
    Ledger::open_read_only(&path).map(Some).map_err(rt)
}

fn init(config_path: &Path, force: bool) -> Result<()> {
    let dir = match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::env::current_dir().context("reading the current directory")?,
    };
    let Some(root) = repo_root_of(&dir) else {
        return Err(usage(format!(
            "{} is not inside a git repository (run `git init` first)",
            dir.display()
        )));
    };
    if config_path.exists() && !force {
        return Err(usage(format!(
            "{} already exists (use --force to overwrite)",
            config_path.display()
        )));
    }
    // In a subdirectory, point `repo:` at the working-tree root (kaizen commits from there).
    let up = dir
        .canonicalize()
        .ok()
        .and_then(|d| {
            d.strip_prefix(&root)
                .ok()
                .map(|rel| rel.components().count())
        })
        .unwrap_or(0);
    let text = if up == 0 {
        DEFAULT_CONFIG.to_string()
    } else {
        let rel = vec![".."; up].join("/");
        DEFAULT_CONFIG.replacen("\nrepo: .\n", &format!("\nrepo: {rel}\n"), 1)
    };
    std::fs::write(config_path, text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    println!("wrote {}", config_path.display());
    let config = load_config(config_path)?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    println!("created {}", config.state_dir.display());
    match assemble::exclude_state_dir(&config.repo, &config.state_dir) {
        Ok(true) => println!(
            "git-ignored {} via .git/info/exclude",
            config.state_dir.display()
        ),
        Ok(false) => println!("{} already git-ignored", config.state_dir.display()),
        Err(e) => {
            return Err(Failure::Runtime(anyhow!(
                "cannot update .git/info/exclude: {e}"
            )));
        }
    }
    std::fs::create_dir_all(&config.lessons)
        .with_context(|| format!("creating {}", config.lessons.display()))?;
    let mut copied = 0;
    for (name, content) in kaizen_core::lesson::starter::starter_lessons() {
        let path = config.lessons.join(name);
        if !path.exists() {
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            copied += 1;
        }
    }
    println!(
        "copied {copied} starter lesson(s) into {}",
        config.lessons.display()
    );
    println!(
        "next: define signals (and rules) in {}, then commit kaizen.yaml and the lessons directory",
        config_path.display()
    );
    Ok(())
}

/// The working-tree root of the git repository `dir` is in, if any.
fn repo_root_of(dir: &Path) -> Option<std::path::PathBuf> {
    let abs = dir.canonicalize().ok()?;
    let mut d = Some(abs.as_path());
    while let Some(p) = d {
        if p.join(".git").exists() {
            return Some(p.to_path_buf());
        }
        d = p.parent();
    }
    None
}

/// Runs one scenario in `workdir` on a real git repository, printing decisions if asked.
async fn run_sim(
    scenario: &kaizen_core::sim::Scenario,
    workdir: &Path,
    print_decisions: bool,
    in_memory_ledger: bool,
) -> Result<kaizen_core::sim::ScenarioResult> {
    use kaizen_core::sim;
    let layout = sim::prepare(scenario, workdir, true).map_err(rt)?;
    let clock = ManualClock::at(scenario.start);
    let applier = kaizen_adapters::git::GitApplier::open(&layout.repo, None)
        .map_err(rt)?
        .with_clock(Arc::new(clock.clone()));
    let validator = Box::new(kaizen_core::validate::HonestValidator::default());
    let ledger = if in_memory_ledger {
        Ledger::in_memory()
    } else {
        Ledger::open(&workdir.join("ledger.sqlite"))
    }
    .map_err(rt)?;
    let options = sim::SimOptions {
        clock: Some(clock),
        sizing: Some(kaizen_core::engine::window_sizing()),
        ledger: Some(ledger),
        ..Default::default()
    };
    sim::run_scenario_with(
        scenario,
        workdir,
        Box::new(applier),
        validator,
        options,
        |report: &CycleReport| {
            if print_decisions {
                render::report(report);
            }
        },
    )
    .await
    .map_err(rt)
}

/// What a review needs from the config besides the ledger.
fn review_inputs(config: &kaizen_core::config::Config) -> kaizen_core::review::ReviewInputs<'_> {
    kaizen_core::review::ReviewInputs {
        signals: &config.signals,
        policy: &config.guards,
        confidence_threshold: config.confidence_threshold,
    }
}

/// `kaizen demo`: the built-in demo scenario in a temp git repository.
pub async fn demo(keep: bool) -> Result<()> {
    use kaizen_core::sim;
    let scenario = sim::builtin(sim::DEMO)
        .ok_or_else(|| Failure::Runtime(anyhow!("the demo scenario is missing from this build")))?
        .map_err(rt)?;
    let dir = tempfile::Builder::new()
        .prefix("kaizen-demo-")
        .tempdir()
        .context("creating a temp dir")?;
    println!("kaizen demo: {}", scenario.description.trim());
    println!(
        "simulated service repo: {}/repo (SQLite ledger in memory, git applier, simulated clock)\n",
        dir.path().display()
    );
    let result = run_sim(&scenario, dir.path(), true, false).await?;
    println!();
    print!("{}", result.render());
    // The weekly meta-review of the simulated week, from the run's ledger.
    let config = load_config(&dir.path().join("kaizen.yaml"))?;
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).map_err(rt)?;
    let review = kaizen_core::review::MetaReview::compute(
        &ledger,
        review_inputs(&config),
        result.end,
        kaizen_core::span::Span::days(7),
    )
    .map_err(rt)?;
    println!();
    print!("{}", review.render());
    // The same review as one self-contained HTML file: in the kept directory, or in the
    // system temp dir (the run's own directory is removed when the demo ends).
    let html = if keep {
        dir.path().join("review.html")
    } else {
        std::env::temp_dir().join("kaizen-demo-review.html")
    };
    std::fs::write(&html, review.render_as(kaizen_core::review::Format::Html))
        .with_context(|| format!("writing {}", html.display()))?;
    println!("\nHTML review: {}", html.display());
    println!();
    let repo = dir.path().join("repo");
    if let Ok(out) = std::process::Command::new("git")
        .args(["log", "--format=%h %ad %s", "--date=format:%a %H:%M"])
        .current_dir(&repo)
        .output()
        && out.status.success()
    {
        println!("git history of the simulated service (newest first):");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
    }
    if keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    if result.passed() {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow!(
            "the demo's expectations did not all hold (see above)"
        )))
    }
}

/// `kaizen sim FILE...`: scenario files (or built-in names such as `leak-fixed`).
pub async fn sim(
    files: &[std::path::PathBuf],
    verbose: bool,
    json: bool,
    in_memory_ledger: bool,
) -> Result<()> {
    use kaizen_core::sim;
    if files.is_empty() {
        let names: Vec<&str> = sim::BUILTIN.iter().map(|(n, _)| *n).collect();
        return Err(usage(format!(
            "give scenario files or built-in names: {}",
            names.join(", ")
        )));
    }
    let mut failed = Vec::new();
    let mut results = Vec::new();
    for f in files {
        let scenario = if f.exists() {
            sim::Scenario::load(f).map_err(|e| usage(e.to_string()))?
        } else {
            match sim::builtin(&f.to_string_lossy()) {
                Some(s) => s.map_err(rt)?,
                None => {
                    return Err(usage(format!(
                        "{}: no such file or built-in scenario",
                        f.display()
                    )));
                }
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("kaizen-sim-")
            .tempdir()
            .context("creating a temp dir")?;
        let result = run_sim(&scenario, dir.path(), verbose && !json, in_memory_ledger).await?;
        if !json {
            print!("{}", result.render());
            println!();
        }
        if !result.passed() {
            failed.push(result.name.clone());
        }
        results.push(result);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).context("serialising")?
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow!(
            "expectations failed in: {}",
            failed.join(", ")
        )))
    }
}
