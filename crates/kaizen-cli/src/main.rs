//! `kaizen`: the command-line face of the kaizen loop. Loop logic lives in `kaizen-core`; this
//! binary parses arguments, assembles the engine from `kaizen.yaml`, and prints what happened.

mod audit;
mod commands;
mod context;
mod lessons;
mod render;
mod service;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// kaizen: observe → propose → guard → apply → validate → learn, one git commit per change.
#[derive(Debug, Parser)]
#[command(name = "kaizen", version, about, long_about = None)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        default_value = "kaizen.yaml",
        env = "KAIZEN_CONFIG"
    )]
    pub config: PathBuf,
    /// Run as if the clock read this instant (RFC 3339, e.g. 2026-11-23T10:00:00Z).
    #[arg(long, global = true, env = "KAIZEN_NOW")]
    pub now: Option<String>,
    /// More log output on stderr (-v: decisions, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up kaizen in the current git repository (kaizen.yaml, .kaizen/, starter lessons).
    Init {
        /// Overwrite an existing kaizen.yaml.
        #[arg(long)]
        force: bool,
    },
    /// What kaizen sees now: signals (latest value, alerting), changes awaiting validation, frozen
    /// areas, budget left, backlog — read from the ledger, nothing sampled or changed.
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Sample every signal once and record the samples. Waits for a running cycle to finish rather
    /// than lose the sample (exit 75 if it is still busy after `--wait`).
    Observe {
        /// How long to wait for the state-dir lock (e.g. 30s, 0s).
        #[arg(long, default_value = "30s")]
        wait: String,
    },
    /// Print the candidates the proposers would make now, with the guards' view; apply nothing.
    Propose {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Run one full cycle: observe, validate what is due (revert failures), propose, guard, apply.
    Cycle {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Check kaizen's invariants: ledger and git history agree, kaizen's files are clean in the
    /// index, no stale locks or temp files kaizen left, no orphaned worktrees, no intervention
    /// stuck half-way, lessons committed. Repairs only what is unambiguously kaizen's (a lock or
    /// temp file whose owner is dead). Exit 0 when clean, 1 with the violations listed.
    Check {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Report only; repair nothing.
        #[arg(long)]
        no_repair: bool,
    },
    /// Run as a daemon on the wall clock: observe, cycle and learn on the config's schedule until
    /// SIGINT/SIGTERM. Holds the state-dir lock while it runs. Serves `/health` and `/metrics`
    /// (loopback 127.0.0.1:9464 unless `serve.listen` or `--listen` says otherwise); SIGHUP
    /// re-reads the config, rules and lessons (a bad file is reported, the old config kept);
    /// under systemd (`NOTIFY_SOCKET`) it reports READY and pings the watchdog while the loop
    /// makes progress.
    Run {
        /// Serve `/health` and `/metrics` on this address (IP:PORT, port 0 for any; `off`: not
        /// at all).
        #[arg(long)]
        listen: Option<String>,
    },
    /// kaizen's own health, read from the ledger (what `/health` serves): running / paused /
    /// degraded and why, each stage's last run, signals (stale ones with their source's last
    /// error), open interventions, frozen areas, recoveries, failures, open escalations and
    /// invariant violations.
    Health {
        /// JSON output (the `/health` document).
        #[arg(long)]
        json: bool,
    },
    /// List interventions.
    Interventions {
        /// JSON output (an array of objects).
        #[arg(long)]
        json: bool,
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
    },
    /// The ledger's event log: every decision, including those not tied to an intervention
    /// (rejected LLM output, proposer failures, sampling gaps, escalations, diagnoses, lessons).
    Events {
        /// How far back (e.g. 24h, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Only events of this kind (e.g. proposal_rejected, escalation, sample_error).
        #[arg(long)]
        kind: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one intervention's whole decision chain.
    Show {
        /// The intervention id (K-000042).
        id: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Revert an applied or validated intervention now.
    Revert {
        /// The intervention id.
        id: String,
        /// Why (recorded).
        #[arg(long, default_value = "requested by operator")]
        reason: String,
    },
    /// Close an intervention a human took over (e.g. after a refused revert you fixed by hand):
    /// it ends `reverted` or `kept` as you say — checked against git — recorded with who
    /// (`$USER`, else git's user.name) and why, and its open escalations close. While
    /// `kaizen run` holds the lock the request is queued and carried out at its next cycle.
    Resolve {
        /// The intervention id.
        id: String,
        /// Why (recorded).
        #[arg(long)]
        why: String,
        /// The change was undone (by hand or `git revert`, committed).
        #[arg(long, conflicts_with = "kept", required_unless_present = "kept")]
        reverted: bool,
        /// The change stays.
        #[arg(long)]
        kept: bool,
    },
    /// Emergency stop: apply nothing (everything, or one area) until `kaizen resume`.
    /// Observation, validation and reverts go on. Works while `kaizen run` is running (it
    /// writes `PAUSE` / `PAUSE.<area>` in the state dir; so can you).
    Pause {
        /// Only this area.
        #[arg(long)]
        area: Option<String>,
        /// Why (recorded, shown by `kaizen status`).
        #[arg(long)]
        why: String,
    },
    /// Lift a pause (everything, or one area).
    Resume {
        /// Only this area.
        #[arg(long)]
        area: Option<String>,
    },
    /// Apply a proposed intervention (manual mode), re-running the guards first.
    Apply {
        /// The intervention id.
        id: String,
    },
    /// The ledger's tamper-evident audit chain: verify it, export it.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Manage lessons (hand-written and distilled).
    Lessons {
        /// What to do.
        #[command(subcommand)]
        command: lessons::LessonsCommand,
    },
    /// Distil finalized interventions into lessons now (and retire lessons that no longer apply).
    Learn {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Let the LLM reword the new lessons' `because` / `retired_when` (needs `llm`).
        #[arg(long)]
        llm: bool,
    },
    /// The meta-review of the last period: activity, calibration and its drift against the four
    /// periods before, blind spots, and the next moves worth making.
    Review {
        /// Period length, ending now (`--since 7d` says the same).
        #[arg(long, visible_alias = "since", default_value = "7d")]
        period: String,
        /// Output format: md (Markdown), html (one self-contained file) or json (see
        /// docs/review-format.md).
        #[arg(long, default_value = "md")]
        format: String,
        /// Same as `--format json`.
        #[arg(long)]
        json: bool,
        /// Write the review to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Ask the LLM for ranked root-cause hypotheses for what is alerting now (a diagnosis, not an
    /// action: nothing is proposed or applied). Needs an `llm` section.
    Diagnose {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Run a simulated week on an example service in a temp git repo, printing every decision.
    Demo {
        /// Keep the temp repo and print its path.
        #[arg(long)]
        keep: bool,
    },
    /// Run a scenario file against the simulator.
    Sim {
        /// Scenario YAML files, or built-in names (demo, leak-fixed, no-effect, ...).
        files: Vec<PathBuf>,
        /// Print every decision.
        #[arg(long)]
        verbose_decisions: bool,
        /// JSON output (one result object per scenario).
        #[arg(long)]
        json: bool,
        /// Keep the run's ledger in memory instead of a SQLite file in the run's temp dir: the
        /// same ledger code, without a durable write per observe tick.
        #[arg(long)]
        in_memory_ledger: bool,
    },
}

/// Whether a panic is only `print!` meeting a closed pipe (`kaizen interventions | head -1`).
fn is_broken_pipe(info: &std::panic::PanicHookInfo<'_>) -> bool {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    text.starts_with("failed printing to std") && text.contains("Broken pipe")
}

/// Colour on stderr only for a terminal, and never with `NO_COLOR` set (https://no-color.org).
fn use_colour(no_color: Option<std::ffi::OsString>, terminal: bool) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// `kaizen run` (the daemon: its loop, HTTP endpoints and signals), `sim` and `demo` (the
/// runtime's schedule, stepped on blocking threads) keep a pool of two workers; every other
/// command is one short job and runs on the main thread — starting the workers (stacks,
/// arenas, wake-ups) was about a millisecond of every cron `kaizen cycle` (BENCHMARKS.md,
/// finding 10).
fn needs_workers(command: &Command) -> bool {
    matches!(
        command,
        Command::Run { .. } | Command::Sim { .. } | Command::Demo { .. }
    )
}

fn main() -> ExitCode {
    // A reader that stops early (`| head`) is not a failure: exit quietly, as other tools do.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_broken_pipe(info) {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAIZEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal as _;
    let colour = use_colour(
        std::env::var_os("NO_COLOR"),
        std::io::stderr().is_terminal(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();

    let mut builder = if needs_workers(&cli.command) {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kaizen: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(context::Failure::Usage(msg)) => {
            eprintln!("kaizen: {msg}");
            ExitCode::from(2)
        }
        Err(context::Failure::Busy(msg)) => {
            eprintln!("kaizen: busy: {msg}");
            ExitCode::from(context::EXIT_BUSY)
        }
        Err(context::Failure::Runtime(err)) => {
            eprintln!("kaizen: {}", error_text(&err));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, each message once: many errors already include their
/// source's text in their own message, and printing the chain as well would say it twice
/// ("…: git: X: git: X").
fn error_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let more = cause.to_string();
        // A cause adds nothing when it, or its final clause ("Error code 14: unable to open
        // database file" → "unable to open database file"), is already said.
        let last = more.rsplit(": ").next().unwrap_or(&more);
        if !more.is_empty() && !text.contains(&more) && !text.contains(last) {
            text.push_str(": ");
            text.push_str(&more);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(None, true));
        assert!(!use_colour(None, false));
        assert!(!use_colour(Some("1".into()), true));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(use_colour(Some("".into()), true));
    }
}
