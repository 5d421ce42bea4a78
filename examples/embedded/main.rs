//! A small tokio host service that embeds kaizen.
//!
//! It serves a toy API on 127.0.0.1 whose latency depends on a tunable in its own git repo
//! (`config/app.yaml`, `cache_mb`), measures that latency itself (its own [`Source`], no
//! `source:` in kaizen.yaml), spawns kaizen's runtime with the config's rules, and logs every
//! event the runtime records. kaizen changes the tunable through guarded, validated commits.
//!
//! ```sh
//! cargo run -p kaizen-cli --example embedded -- --config path/to/kaizen.yaml --listen 127.0.0.1:8080
//! ```
//!
//! Endpoints: `GET /work` (the API), `GET /status` (the runtime's status snapshot),
//! `POST /observe`, `POST /cycle` (run a step now). With `--start RFC3339` the host runs on a
//! settable clock moved by `POST /advance?minutes=N` (how its integration test lives an hour in
//! a second); `POST /cycle-held` starts a cycle whose sampling waits for shutdown (so a test can
//! stop the host with a cycle in flight). SIGTERM/SIGINT shut the runtime down cleanly.
#![allow(clippy::print_stdout)]

use anyhow::Context;
use async_trait::async_trait;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use clap::Parser;
use kaizen_core::clock::{Clock, ManualClock, SystemClock};
use kaizen_core::observe::{Source, SourceError};
use kaizen_core::runtime::Handle;
use kaizen_core::signal::Sample;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The host's options.
#[derive(Debug, Parser)]
struct Args {
    /// kaizen's config (its repo holds `config/app.yaml`).
    #[arg(long, default_value = "kaizen.yaml")]
    config: PathBuf,
    /// Where the toy API listens (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Run on a settable clock starting here (tests) instead of the wall clock.
    #[arg(long)]
    start: Option<String>,
    /// Serve the toy API alone, without kaizen (the footprint benchmark's baseline).
    #[arg(long)]
    without_kaizen: bool,
    /// The host's source also reports this many more signals (`extra_0000`, …; declare them
    /// in kaizen.yaml), for the footprint benchmark.
    #[arg(long, default_value_t = 0)]
    extra_signals: usize,
}

/// The service's tunable, read from its repo as kaizen left it.
fn cache_mb(repo: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(repo.join("config/app.yaml")).ok()?;
    text.lines()
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.trim().strip_prefix("cache_mb:"))
        .find_map(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// The toy API's latency for a cache size: misses dominate below the working set (±4%
/// deterministic jitter from the minute, so samples are not all equal).
fn latency_ms(cache_mb: f64, at: DateTime<Utc>) -> f64 {
    let minute = at.timestamp().div_euclid(60) as u64;
    let mut z = minute.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 31;
    let jitter = (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    (32_000.0 / cache_mb) * (1.0 + 0.08 * jitter)
}

/// The host's own source: it measures itself.
struct ServiceLatency {
    repo: PathBuf,
    /// Set by `/cycle-held`: the next sampling waits until the host shuts down.
    hold: Arc<AtomicBool>,
    entered: Arc<Notify>,
    shutdown: CancellationToken,
    /// More signals the host reports (see `--extra-signals`).
    extra: Vec<String>,
}

#[async_trait]
impl Source for ServiceLatency {
    fn name(&self) -> &str {
        "latency_ms"
    }

    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        if self.hold.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.shutdown.cancelled().await;
            return Err(SourceError::new("latency_ms", "host shutting down"));
        }
        let mb = cache_mb(&self.repo)
            .ok_or_else(|| SourceError::new("latency_ms", "config/app.yaml has no cache_mb"))?;
        let mut out = vec![Sample::new("latency_ms", now, latency_ms(mb, now))];
        for (i, name) in self.extra.iter().enumerate() {
            out.push(Sample::new(name.as_str(), now, 100.0 + i as f64 % 7.0));
        }
        Ok(out)
    }
}

#[derive(Clone)]
struct App {
    handle: Handle,
    clock: Option<ManualClock>,
    repo: PathBuf,
    hold: Arc<AtomicBool>,
    entered: Arc<Notify>,
}

fn err(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn work(State(app): State<App>) -> Result<String, (StatusCode, String)> {
    let mb = cache_mb(&app.repo).ok_or_else(|| err("no cache_mb"))?;
    Ok(format!("{:.1}\n", latency_ms(mb, Utc::now())))
}

async fn status(State(app): State<App>) -> impl IntoResponse {
    app.handle.status().await.map(Json).map_err(err)
}

async fn observe(State(app): State<App>) -> impl IntoResponse {
    app.handle
        .observe_now()
        .await
        .map(|n| n.to_string())
        .map_err(err)
}

async fn cycle(State(app): State<App>) -> impl IntoResponse {
    app.handle.cycle_now().await.map(Json).map_err(err)
}

#[derive(serde::Deserialize)]
struct Advance {
    minutes: i64,
}

async fn advance(State(app): State<App>, Query(q): Query<Advance>) -> impl IntoResponse {
    let Some(clock) = &app.clock else {
        return Err((StatusCode::CONFLICT, "not on a settable clock".to_string()));
    };
    clock.advance(chrono::Duration::minutes(q.minutes.clamp(0, 7 * 24 * 60)));
    Ok(clock.now().to_rfc3339())
}

async fn cycle_held(State(app): State<App>) -> impl IntoResponse {
    app.hold.store(true, Ordering::SeqCst);
    let entered = app.entered.notified();
    let handle = app.handle.clone();
    tokio::spawn(async move {
        let outcome = handle.cycle_now().await;
        println!("host: held cycle ended: {}", outcome.is_ok());
    });
    entered.await;
    (StatusCode::ACCEPTED, "cycle in flight\n")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = kaizen_core::config::Config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let manual = match &args.start {
        Some(s) => Some(ManualClock::at(
            DateTime::parse_from_rfc3339(s)
                .context("--start is RFC 3339")?
                .with_timezone(&Utc),
        )),
        None => None,
    };
    let clock: Arc<dyn Clock> = match &manual {
        Some(m) => Arc::new(m.clone()),
        None => Arc::new(SystemClock),
    };
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone());
    if args.without_kaizen {
        return serve_alone(&args.listen, config.repo.clone(), shutdown).await;
    }
    let hold = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(Notify::new());

    // kaizen's engine from the config, plus the host's own source.
    let engine = kaizen_adapters::assemble::builder_from_config(&config, clock, Vec::new())?
        .source(Box::new(ServiceLatency {
            repo: config.repo.clone(),
            hold: hold.clone(),
            entered: entered.clone(),
            shutdown: shutdown.clone(),
            extra: (0..args.extra_signals)
                .map(|i| format!("extra_{i:04}"))
                .collect(),
        }))
        .build()?;
    let handle = kaizen_adapters::assemble::runtime_for(&config, engine)?
        .cancel_token(&shutdown)
        .lock_wait(std::time::Duration::ZERO)
        .spawn();
    let mut events = handle.subscribe();
    handle.ready().await?;
    let printer = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            let id = e.intervention.map(|i| i.to_string()).unwrap_or("-".into());
            // Typed: the kind is the event's stable tag (`proposed`, `applied`, `validated`, …).
            println!("event {} {id} {}", e.event.kind(), e.event);
            let _ = std::io::stdout().flush();
        }
    });

    let app = App {
        handle: handle.clone(),
        clock: manual,
        repo: config.repo.clone(),
        hold,
        entered,
    };
    let router = axum::Router::new()
        .route("/work", get(work))
        .route("/status", get(status))
        .route("/observe", post(observe))
        .route("/cycle", post(cycle))
        .route("/cycle-held", post(cycle_held))
        .route("/advance", post(advance))
        .with_state(app)
        // kaizen's own /health and /metrics, served by the host beside its routes.
        .merge(kaizen_adapters::serve::router(handle.clone()));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("host: listening on {}", listener.local_addr()?);
    let _ = std::io::stdout().flush();

    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    // The host's token stopped the runtime too; wait for it to finish the step in flight.
    handle.shutdown().await?;
    // Print the events of the step that was in flight before saying so (the printer ends when
    // the last handle is gone; returning from main would drop it mid-queue).
    drop(handle);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), printer).await;
    println!("host: runtime shut down cleanly");
    Ok(())
}

/// Cancels `token` on SIGTERM or SIGINT.
fn stop_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        token.cancel();
    });
}

/// The toy API without kaizen, until `shutdown`.
async fn serve_alone(
    listen: &str,
    repo: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    async fn work_alone(State(repo): State<PathBuf>) -> Result<String, (StatusCode, String)> {
        let mb = cache_mb(&repo).ok_or_else(|| err("no cache_mb"))?;
        Ok(format!("{:.1}\n", latency_ms(mb, Utc::now())))
    }
    let router = axum::Router::new()
        .route("/work", get(work_alone))
        .with_state(repo);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!(
        "host: listening on {} (without kaizen)",
        listener.local_addr()?
    );
    let _ = std::io::stdout().flush();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
