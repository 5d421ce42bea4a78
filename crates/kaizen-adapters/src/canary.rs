//! Command canaries: a configured shell command tries a change in a limited scope; exit 0 passes.
//!
//! The command runs as `sh -c <command>` in the repository with the change described in its
//! environment: `KAIZEN_INTERVENTION` (`K-000042`), `KAIZEN_AREA`, `KAIZEN_RISK`, `KAIZEN_TITLE`
//! and `KAIZEN_CHANGE` (the edits as a JSON array). Anything other than a clean exit 0 within the
//! timeout — a non-zero exit, a signal, a timeout, a failure to start — is a `Fail` (fail closed).

use crate::source::{RunError, excerpt, run_shell, show_duration};
use async_trait::async_trait;
use kaizen_core::canary::{Canary, CanaryResult};
use kaizen_core::config::Config;
use kaizen_core::intervention::{Candidate, InterventionId};
use std::path::PathBuf;
use std::time::Duration;

pub mod worktree;
pub use worktree::WorktreeCanary;

/// Output kept from a canary command, per stream.
const MAX_CANARY_OUTPUT: usize = 64 * 1024;

/// A canary that runs a shell command for one area (see the module docs).
#[derive(Debug, Clone)]
pub struct CommandCanary {
    area: String,
    command: String,
    cwd: PathBuf,
    timeout: Duration,
}

impl CommandCanary {
    /// A canary for `area` running `command` in `cwd`, failed (and killed) after `timeout`.
    pub fn new(
        area: impl Into<String>,
        command: impl Into<String>,
        cwd: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Self {
        Self {
            area: area.into(),
            command: command.into(),
            cwd: cwd.into(),
            timeout,
        }
    }

    async fn run(&self, id: InterventionId, candidate: &Candidate) -> CanaryResult {
        if candidate.area != self.area {
            return CanaryResult::Fail(format!(
                "the canary for area `{}` was asked to try a change to area `{}`",
                self.area, candidate.area
            ));
        }
        let change = match serde_json::to_string(&candidate.change) {
            Ok(c) => c,
            Err(e) => {
                return CanaryResult::Fail(format!("cannot describe the change as JSON: {e}"));
            }
        };
        let env = [
            ("KAIZEN_INTERVENTION", id.to_string()),
            ("KAIZEN_AREA", candidate.area.clone()),
            ("KAIZEN_RISK", candidate.risk.to_string()),
            ("KAIZEN_TITLE", candidate.title.clone()),
            ("KAIZEN_CHANGE", change),
        ];
        match run_shell(
            &self.command,
            &self.cwd,
            &env,
            self.timeout,
            MAX_CANARY_OUTPUT,
        )
        .await
        {
            Ok(out) if out.status.success() => {
                let said = excerpt(&out.stdout);
                CanaryResult::Pass(if said.is_empty() {
                    "canary command exited 0".to_string()
                } else {
                    format!("canary command exited 0: {said}")
                })
            }
            Ok(out) => {
                let mut said = excerpt(&out.stderr);
                if said.is_empty() {
                    said = excerpt(&out.stdout);
                }
                CanaryResult::Fail(if said.is_empty() {
                    format!("canary command {}", out.status)
                } else {
                    format!("canary command {}: {said}", out.status)
                })
            }
            Err(RunError::Timeout) => CanaryResult::Fail(format!(
                "canary command timed out after {}; killed",
                show_duration(self.timeout)
            )),
            Err(RunError::Spawn(e)) => CanaryResult::Fail(format!(
                "canary command could not start in {}: {e}",
                self.cwd.display()
            )),
            Err(e) => CanaryResult::Fail(format!("canary command failed: {e}")),
        }
    }
}

#[async_trait]
impl Canary for CommandCanary {
    fn area(&self) -> &str {
        &self.area
    }

    async fn trial(&self, id: InterventionId, candidate: &Candidate) -> CanaryResult {
        let result = self.run(id, candidate).await;
        match &result {
            CanaryResult::Pass(why) => {
                tracing::info!(
                    "kaizen intervention={id} stage=canary area={} pass: {why}",
                    self.area
                )
            }
            CanaryResult::Fail(why) => {
                tracing::warn!(
                    "kaizen intervention={id} stage=canary area={} fail: {why}",
                    self.area
                )
            }
        }
        result
    }
}

/// One canary per configured area, each running in `config.repo`.
pub fn build_canaries(config: &Config) -> Vec<Box<dyn Canary>> {
    // The commands these run must never see the config's secrets.
    crate::source::scrub_env(config.secret_env.iter().cloned());
    config
        .canaries
        .iter()
        .map(|(area, c)| {
            let timeout = Duration::from_secs(c.timeout.seconds().max(1));
            match c.place {
                kaizen_core::config::CanaryPlace::Worktree => Box::new(WorktreeCanary::new(
                    area,
                    &c.command,
                    config.repo.clone(),
                    timeout,
                    c.compare,
                    c.tolerance,
                    c.metric.clone(),
                )) as Box<dyn Canary>,
                kaizen_core::config::CanaryPlace::Repo => Box::new(CommandCanary::new(
                    area,
                    &c.command,
                    config.repo.clone(),
                    timeout,
                )) as Box<dyn Canary>,
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kaizen_core::edit::Edit;
    use kaizen_core::intervention::{ExpectedChange, Origin, Prediction, Risk};
    use kaizen_core::span::Span;

    fn candidate() -> Candidate {
        Candidate {
            area: "cache".into(),
            kind: "config_set".into(),
            title: "grow the cache".into(),
            hypothesis: "h".into(),
            change: vec![Edit::ConfigSet {
                file: "config/app.yaml".into(),
                key: "cache.size_mb".into(),
                value: serde_json::json!(128),
            }],
            prediction: Prediction {
                signal: "latency_ms".into(),
                change: ExpectedChange::Relative(-0.2),
                within: Span::minutes(30),
            },
            risk: Risk::Medium,
            confidence: 0.7,
            rollback: Some("revert".into()),
            origin: Origin::default(),
        }
    }

    fn canary(dir: &std::path::Path, cmd: &str, timeout_ms: u64) -> CommandCanary {
        CommandCanary::new("cache", cmd, dir, Duration::from_millis(timeout_ms))
    }

    #[tokio::test]
    async fn passes_on_exit_zero_with_the_change_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = r#"printf '%s|%s|%s|%s\n' "$KAIZEN_INTERVENTION" "$KAIZEN_AREA" "$KAIZEN_RISK" "$KAIZEN_TITLE"; printf '%s' "$KAIZEN_CHANGE" > change.json; pwd > cwd.txt"#;
        let r = canary(dir.path(), cmd, 5000)
            .trial(InterventionId(42), &candidate())
            .await;
        assert_eq!(
            r,
            CanaryResult::Pass(
                "canary command exited 0: K-000042|cache|medium|grow the cache".into()
            )
        );
        let change: Vec<Edit> =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("change.json")).unwrap())
                .unwrap();
        assert_eq!(change, candidate().change);
        let cwd = std::fs::read_to_string(dir.path().join("cwd.txt")).unwrap();
        assert_eq!(
            std::path::Path::new(cwd.trim()).canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[tokio::test]
    async fn fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let id = InterventionId(1);
        let c = candidate();
        match canary(dir.path(), "echo 'p99 doubled' >&2; exit 3", 5000)
            .trial(id, &c)
            .await
        {
            CanaryResult::Fail(m) => assert!(
                m.contains("exit status: 3") && m.contains("p99 doubled"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        let started = std::time::Instant::now();
        match canary(dir.path(), "sleep 30; exit 0", 300)
            .trial(id, &c)
            .await
        {
            CanaryResult::Fail(m) => assert!(m.contains("timed out after 300ms"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        match canary(&dir.path().join("missing"), "true", 5000)
            .trial(id, &c)
            .await
        {
            CanaryResult::Fail(m) => assert!(m.contains("could not start"), "{m}"),
            other => panic!("{other:?}"),
        }
        match canary(dir.path(), "kill -9 $$", 5000).trial(id, &c).await {
            CanaryResult::Fail(m) => assert!(m.contains("signal"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut other_area = candidate();
        other_area.area = "db".into();
        assert!(matches!(
            canary(dir.path(), "true", 5000)
                .trial(id, &other_area)
                .await,
            CanaryResult::Fail(_)
        ));
    }

    #[tokio::test]
    async fn output_in_results_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let r = canary(dir.path(), "yes abcdefgh | head -c 200000", 5000)
            .trial(InterventionId(1), &candidate())
            .await;
        match r {
            CanaryResult::Pass(m) => assert!(m.chars().count() < 600, "{}", m.len()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn built_from_config() {
        let text = "canaries:\n  cache:\n    command: ./canary.sh\n    timeout: 2m\n  db:\n    command: 'true'\n";
        let config = Config::parse(text, std::path::Path::new("/srv/app/kaizen.yaml")).unwrap();
        let built = build_canaries(&config);
        let areas: Vec<&str> = built.iter().map(|c| c.area()).collect();
        assert_eq!(areas, ["cache", "db"]);
    }
}
