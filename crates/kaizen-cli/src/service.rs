//! `kaizen run` as a service: the runtime on the wall clock, `/health` and `/metrics` over HTTP,
//! SIGHUP reloads, systemd's notify protocol and watchdog, and `kaizen health`.

use crate::context::{Failure, load_config, rt, usage};
use crate::render;
use anyhow::anyhow;
use kaizen_adapters::assemble;
use kaizen_adapters::systemd::{self, Notifier};
use kaizen_core::clock::{Clock, SystemClock};
use kaizen_core::config::{Config, DEFAULT_LISTEN, Listen};
use kaizen_core::health::{Health, StageResult};
use kaizen_core::ledger::Ledger;
use kaizen_core::runtime::{Reload, ReloadFn};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Result<T> = std::result::Result<T, Failure>;

/// Where to serve, from `--listen` (wins) and the config; `None`: not at all. A port taken at
/// the *default* address is a warning (another kaizen on this host has it); an address the
/// operator chose must bind or `kaizen run` stops.
async fn listener(config: &Config, flag: Option<&str>) -> Result<Option<tokio::net::TcpListener>> {
    let listen = match flag {
        Some(text) => Listen::parse(text).map_err(|e| usage(format!("--listen: {e}")))?,
        None => config.serve,
    };
    let (addr, explicit): (SocketAddr, bool) = match listen {
        Listen::Off => return Ok(None),
        Listen::At(a) => (a, true),
        Listen::Default => match DEFAULT_LISTEN.parse() {
            Ok(a) => (a, false),
            Err(e) => return Err(Failure::Runtime(anyhow!("{DEFAULT_LISTEN}: {e}"))),
        },
    };
    match kaizen_adapters::serve::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if !explicit => {
            tracing::warn!("kaizen stage=serve {e}; not serving (set serve.listen or --listen)");
            eprintln!("kaizen: warning: {e}; /health and /metrics not served (use --listen ADDR)");
            Ok(None)
        }
        Err(e) => Err(rt(e)),
    }
}

/// Builds the replacement engine for a SIGHUP: config, rules and lessons read again. A bad
/// config or rules file fails the reload (the runtime keeps what it has); a bad lesson file is
/// skipped and recorded, as at start-up.
fn reload_from(path: PathBuf) -> ReloadFn {
    Box::new(move || {
        let config = Config::load(&path)?;
        let (lessons, errors) = crate::context::lessons_and_errors(&config.lessons);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut engine = assemble::engine_from_config(&config, clock, lessons)?;
        assemble::record_lesson_errors(&mut engine, &errors)?;
        Ok(Reload {
            engine,
            schedule: config.schedule.clone(),
            learner: Some(Arc::new(assemble::ConfigLearner::new(config.clone()))),
            what: path.display().to_string(),
        })
    })
}

/// `kaizen run`: the runtime on the wall clock until SIGINT/SIGTERM, printing each event the
/// ledger records. Failures of one task are logged and recorded; the loop goes on (the monitor
/// fails open, apply fails closed). SIGHUP reloads; under systemd, READY and watchdog pings.
pub async fn daemon(config_path: &Path, listen: Option<&str>) -> Result<()> {
    let config = load_config(config_path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let builder = assemble::runtime_from_config(
        &config,
        clock,
        crate::context::lessons_and_errors(&config.lessons).0,
    )
    .map_err(|e| {
        if e.is_config() {
            usage(e.to_string())
        } else {
            Failure::Runtime(anyhow!(e))
        }
    })?;
    // Flag and config are checked before anything starts.
    if let Some(text) = listen {
        Listen::parse(text).map_err(|e| usage(format!("--listen: {e}")))?;
    }
    let notifier = Notifier::from_env().map_err(rt)?;
    // A cron cycle in progress finishes first; another daemon or host is refused by name.
    let handle = builder.lock_wait(std::time::Duration::from_secs(5)).spawn();
    let mut events = handle.subscribe();
    handle.ready().await.map_err(rt)?;
    // Bound only once the lock is held: a second daemon refused the lock never takes the port.
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match listener(&config, listen).await {
        Ok(Some(l)) => {
            let addr = l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into());
            eprintln!("kaizen: serving /health and /metrics on http://{addr}");
            let h = handle.clone();
            Some(tokio::spawn(async move {
                let stop = async {
                    let _ = http_stopped.await;
                };
                if let Err(e) = kaizen_adapters::serve::serve(l, h, stop).await {
                    tracing::error!("kaizen stage=serve {e}");
                }
            }))
        }
        Ok(None) => None,
        Err(e) => {
            let _ = handle.shutdown().await;
            return Err(e);
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::Runtime(anyhow!("cannot listen for SIGTERM: {e}")))?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Failure::Runtime(anyhow!("cannot listen for SIGHUP: {e}")))?;
    eprintln!(
        "kaizen: running on {} (observe every {}, cycle every {}, learn every {}); stop with Ctrl-C or SIGTERM, reload with SIGHUP",
        config.repo.display(),
        config.schedule.observe_every,
        config.schedule.cycle_every,
        config.schedule.learn_every
    );
    let notifier = notifier.map(Arc::new);
    let mut dog = None;
    if let Some(n) = &notifier {
        n.tell("READY=1\nSTATUS=kaizen running");
        if let Some(interval) = systemd::watchdog_interval() {
            let n = n.clone();
            let progress = handle.progress();
            dog = Some(tokio::spawn(async move {
                systemd::watchdog(&n, progress, interval).await
            }));
        }
    }
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => render::event(&e),
                Err(kaizen_core::runtime::RecvError::Lagged(n)) => {
                    eprintln!("kaizen: {n} event(s) not printed (see `kaizen events`)")
                }
                Err(_) => break,
            },
            _ = hup.recv() => {
                if let Some(n) = &notifier {
                    n.tell("RELOADING=1\nSTATUS=kaizen reloading its config");
                }
                match handle.reload(reload_from(config_path.to_path_buf())).await {
                    Ok(what) => eprintln!("kaizen: {what}"),
                    Err(e) => eprintln!("kaizen: {}", error_chain(&e)),
                }
                if let Some(n) = &notifier {
                    n.tell("READY=1\nSTATUS=kaizen running");
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    if let Some(n) = &notifier {
        n.tell("STOPPING=1");
    }
    let stopped = handle.shutdown().await;
    if let Some(d) = dog {
        d.abort();
    }
    let _ = stop_http.send(());
    if let Some(s) = server {
        let _ = s.await;
    }
    eprintln!("kaizen: stopped");
    stopped.map_err(rt)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The health snapshot read from the ledger (what `/health` serves, without a runtime's own
/// step records).
pub fn health_from_ledger(config: &Config, ledger: &Ledger, clock: &dyn Clock) -> Result<Health> {
    let mut status = kaizen_core::status::StatusSnapshot::compute(
        ledger,
        &kaizen_core::engine::EngineSettings::from_config(config),
        Some(&config.state_dir),
        clock.now(),
    )
    .map_err(rt)?;
    status.invalid_lessons = kaizen_core::lesson::store::load(&config.lessons)
        .map(|(_, errors)| errors)
        .unwrap_or_default()
        .iter()
        .map(|e| kaizen_core::status::InvalidLesson {
            file: e.file.display().to_string(),
            error: e.to_string(),
        })
        .collect();
    Health::compute(&status, ledger).map_err(rt)
}

/// `kaizen health`: the snapshot, as text or JSON.
pub fn print_health(h: &Health, json: bool) -> Result<()> {
    if json {
        let text = serde_json::to_string_pretty(h).map_err(|e| Failure::Runtime(anyhow!(e)))?;
        println!("{text}");
        return Ok(());
    }
    let t = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    println!("kaizen {} at {}", h.status.as_str(), t(h.at));
    for w in &h.why {
        println!("  {w}");
    }
    println!("last runs:");
    if h.last_cycle.is_empty() {
        println!("  none recorded yet");
    }
    for (stage, s) in &h.last_cycle {
        let result = match s.result {
            StageResult::Ok => "ok",
            StageResult::Failed => "FAILED",
        };
        println!("  {stage:<9} {} {result:<6} {}", t(s.at), s.detail);
    }
    println!("signals:");
    if h.signals.is_empty() {
        println!("  none configured");
    }
    for (name, s) in &h.signals {
        let value = s
            .value
            .map(|v| format!("{v} {}", s.unit))
            .unwrap_or_else(|| "no sample".into());
        let at = s.at.map(|a| format!(" at {}", t(a))).unwrap_or_default();
        let alert = if s.alerting { "  ALERT" } else { "" };
        let stale = s
            .stale
            .as_ref()
            .map(|st| format!("  STALE: {}", st.reason))
            .unwrap_or_default();
        println!("  {name:<20} {value}{at}{alert}{stale}");
        if let Some(e) = s.stale.as_ref().and_then(|st| st.last_error.as_deref()) {
            println!("    last error: {e}");
        }
    }
    println!("open interventions: {}", h.open_interventions);
    println!("frozen areas: {}", h.frozen_areas.len());
    println!("escalations open: {}", h.escalations_open);
    println!("invariant violations open: {}", h.invariant_violations_open);
    println!(
        "last 24h: {} recoveries, {} failures",
        h.recoveries_24h, h.failures_24h
    );
    Ok(())
}

/// `kaizen status`'s warnings for stale signals (a failing source's old value is not current).
pub fn print_stale_warnings(h: &Health) {
    for (name, s) in &h.signals {
        if let Some(st) = &s.stale {
            let err = st
                .last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            println!("warning: signal {name} is stale: {}{err}", st.reason);
        }
    }
}
