//! `kaizen audit verify` / `kaizen audit export`: the ledger's tamper-evident audit chain,
//! checked against the `Kaizen-Audit` trailers git holds (see `kaizen_core::audit`).

use crate::context::{Failure, load_config, rt, usage};
use anyhow::{Context, anyhow};
use clap::Subcommand;
use kaizen_core::apply::Applier;
use kaizen_core::clock::Clock;
use kaizen_core::ledger::Ledger;
use std::path::Path;
use std::sync::Arc;

type Result<T> = std::result::Result<T, Failure>;

/// `kaizen audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the chain: exit 0 "intact, N events, head H", or exit 1 naming the first event
    /// altered, removed, inserted or reordered (or a commit whose audit head the ledger lost).
    Verify {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Write events as JSON Lines, one event per line with its chain hash.
    Export {
        /// How far back (e.g. 7d); default: everything.
        #[arg(long)]
        since: Option<String>,
    },
}

/// Runs an audit command (read-only: no state lock, the ledger opened read-only).
pub fn run(command: AuditCommand, config_path: &Path, clock: Arc<dyn Clock>) -> Result<()> {
    let config = load_config(config_path)?;
    let path = config.ledger_path();
    let ledger = if path.exists() {
        Some(Ledger::open_read_only(&path).map_err(rt)?)
    } else {
        None
    };
    let rows = match &ledger {
        Some(l) => l.audit_rows().map_err(rt)?,
        None => Vec::new(),
    };
    match command {
        AuditCommand::Verify { json } => {
            // git is the witness: every kaizen commit names the chain head it was made at.
            let witnesses = kaizen_adapters::git::GitApplier::open(&config.repo, None)
                .and_then(|g| g.audit_witnesses())
                .map_err(|e| {
                    Failure::Runtime(anyhow!("cannot read the repository's history: {e}"))
                })?;
            let report = kaizen_core::audit::verify(&rows, &witnesses);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("serialising")?
                );
            }
            match &report.problem {
                None => {
                    if !json {
                        println!(
                            "intact, {} events, head {} ({} commit(s) witness it)",
                            report.events,
                            report.head.as_deref().unwrap_or("-"),
                            report.witnesses
                        );
                    }
                    Ok(())
                }
                Some(problem) => Err(Failure::Runtime(anyhow!("audit: {problem}"))),
            }
        }
        AuditCommand::Export { since } => {
            let from_ms = match since {
                Some(s) => {
                    let span: kaizen_core::span::Span = s
                        .parse()
                        .map_err(|e: kaizen_core::span::SpanError| usage(e.to_string()))?;
                    Some(span.before(clock.now()).timestamp_millis())
                }
                None => None,
            };
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for r in rows.iter().filter(|r| from_ms.is_none_or(|f| r.at_ms >= f)) {
                let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(r.at_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                let event: serde_json::Value = r
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(serde_json::Value::Null);
                let line = serde_json::json!({
                    "seq": r.seq,
                    "at": at,
                    "intervention": r.intervention.map(|i| kaizen_core::InterventionId(i).to_string()),
                    "stage": r.stage,
                    "kind": r.kind,
                    "detail": r.detail,
                    "event": event,
                    "prev_hash": r.prev_hash,
                    "hash": r.hash,
                });
                match writeln!(out, "{line}") {
                    Ok(()) => {}
                    // The reader went away (`| head`): not a failure.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(Failure::Runtime(anyhow!(e).context("writing"))),
                }
            }
            match out.flush() {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(Failure::Runtime(anyhow!(e).context("writing")))
                }
                _ => Ok(()),
            }
        }
    }
}
