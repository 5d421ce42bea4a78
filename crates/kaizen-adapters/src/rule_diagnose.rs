//! Rules' `diagnose` commands as shell commands in the repository, run like sources, canaries
//! and notify commands (own process group, killed on timeout, output bounded).

use crate::source::{RunError, excerpt, run_shell, show_duration};
use async_trait::async_trait;
use kaizen_core::rules::{Diagnose, DiagnoseOutcome, DiagnoseRunner};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Most bytes of a diagnose command's output kept (facts beyond this are not JSON anyway).
const OUTPUT_LIMIT: usize = 64 * 1024;

/// Runs `sh -c command` in the repository with `KAIZEN_RULE` and `KAIZEN_TRIGGER` set. Exit 0
/// confirms (a JSON object on stdout is kept as facts); a non-zero exit, a timeout or a command
/// that cannot start refuses.
#[derive(Debug, Clone)]
pub struct CommandDiagnoser {
    cwd: PathBuf,
}

impl CommandDiagnoser {
    /// A runner whose commands start in `cwd` (the repository root).
    pub fn new(cwd: PathBuf) -> Self {
        Self { cwd }
    }
}

#[async_trait]
impl DiagnoseRunner for CommandDiagnoser {
    async fn run(&self, rule: &str, diagnose: &Diagnose, trigger: &str) -> DiagnoseOutcome {
        let env = [
            ("KAIZEN_RULE", rule.to_string()),
            ("KAIZEN_TRIGGER", trigger.to_string()),
        ];
        let timeout = Duration::from_secs(diagnose.timeout.seconds().max(1));
        let started = Instant::now();
        match run_shell(&diagnose.command, &self.cwd, &env, timeout, OUTPUT_LIMIT).await {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                let facts = if out.stdout_truncated {
                    None
                } else {
                    serde_json::from_str::<serde_json::Value>(text.trim())
                        .ok()
                        .filter(serde_json::Value::is_object)
                };
                let note = format!(
                    "exit 0 in {}{}",
                    show_duration(started.elapsed()),
                    if facts.is_some() {
                        ", facts recorded"
                    } else {
                        ""
                    }
                );
                DiagnoseOutcome::Confirmed { facts, note }
            }
            Ok(out) => {
                let why = excerpt(&out.stderr);
                let why = if why.is_empty() {
                    excerpt(&out.stdout)
                } else {
                    why
                };
                DiagnoseOutcome::Refused {
                    reason: format!(
                        "{}{}",
                        match out.status.code() {
                            Some(c) => format!("exit {c}"),
                            None => "killed by a signal".to_string(),
                        },
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {why}")
                        }
                    ),
                }
            }
            Err(RunError::Timeout) => DiagnoseOutcome::Refused {
                reason: format!("timed out after {}", diagnose.timeout),
            },
            Err(e) => DiagnoseOutcome::Refused {
                reason: format!("could not run: {e}"),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kaizen_core::span::Span;

    fn d(command: &str, secs: u64) -> Diagnose {
        Diagnose {
            command: command.into(),
            timeout: Span::from_secs(secs),
        }
    }

    #[tokio::test]
    async fn exit_codes_facts_and_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let r = CommandDiagnoser::new(dir.path().to_path_buf());
        match r
            .run(
                "grow-cache",
                &d(
                    "echo \"{\\\"rule\\\": \\\"$KAIZEN_RULE\\\", \\\"hit\\\": 0.2}\"",
                    5,
                ),
                "latency high",
            )
            .await
        {
            DiagnoseOutcome::Confirmed { facts, note } => {
                assert_eq!(
                    facts,
                    Some(serde_json::json!({"rule": "grow-cache", "hit": 0.2}))
                );
                assert!(note.contains("facts recorded"), "{note}");
            }
            other => panic!("{other:?}"),
        }
        match r.run("r", &d("echo fine; exit 0", 5), "t").await {
            DiagnoseOutcome::Confirmed { facts, .. } => assert_eq!(facts, None),
            other => panic!("{other:?}"),
        }
        match r
            .run("r", &d("echo 'hit ratio is fine' >&2; exit 3", 5), "t")
            .await
        {
            DiagnoseOutcome::Refused { reason } => {
                assert_eq!(reason, "exit 3: hit ratio is fine")
            }
            other => panic!("{other:?}"),
        }
        match r.run("r", &d("sleep 5", 1), "t").await {
            DiagnoseOutcome::Refused { reason } => assert_eq!(reason, "timed out after 1s"),
            other => panic!("{other:?}"),
        }
    }
}
