//! Hook commands (`hooks: { on_apply, on_revert }`): `sh -c` in the repository, in their own
//! process group (killed whole on timeout), without the config's secrets in their environment.

use kaizen_core::config::Config;
use kaizen_core::hooks::{HookConfig, HookEvent, HookOutcome, Hooks, HooksConfig};
use kaizen_core::intervention::{Candidate, InterventionId};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Output kept from a hook, per stream.
const MAX_OUTPUT: u64 = 64 * 1024;

/// The configured hooks of one repository.
#[derive(Debug, Clone)]
pub struct CommandHooks {
    cwd: PathBuf,
    config: HooksConfig,
}

impl CommandHooks {
    /// Hooks run in `cwd`.
    pub fn new(cwd: impl Into<PathBuf>, config: HooksConfig) -> Self {
        Self {
            cwd: cwd.into(),
            config,
        }
    }

    /// The hooks a config asks for (`None`: none configured).
    pub fn from_config(config: &Config) -> Option<Self> {
        let h = config.hooks.clone();
        (h.on_apply.is_some() || h.on_revert.is_some()).then(|| Self::new(config.repo.clone(), h))
    }

    fn exec(&self, hook: &HookConfig, env: &[(&str, String)]) -> HookOutcome {
        let fail = |output: String| HookOutcome { ok: false, output };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&hook.command)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        for name in crate::source::scrubbed_env() {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v.replace('\0', ""));
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return fail(format!("could not start: {e}")),
        };
        let pipe = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(r) = r {
                    let _ = r.take(MAX_OUTPUT).read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = pipe(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let err = pipe(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let timeout = Duration::from_secs(hook.timeout.seconds().max(1));
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) if Instant::now() >= deadline => {
                    // The whole group: `sh` and whatever it started.
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{}", child.id())])
                        .status();
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "timed out after {}; killed",
                        crate::source::show_duration(timeout)
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(format!("cannot wait for it: {e}")),
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let said = [
            crate::source::excerpt(&stdout),
            crate::source::excerpt(&stderr),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
        match status {
            Ok(s) if s.success() => HookOutcome {
                ok: true,
                output: if said.is_empty() {
                    "exited 0".into()
                } else {
                    format!("exited 0: {said}")
                },
            },
            Ok(s) => fail(if said.is_empty() {
                format!("{s}")
            } else {
                format!("{s}: {said}")
            }),
            Err(why) => fail(if said.is_empty() {
                why
            } else {
                format!("{why}: {said}")
            }),
        }
    }
}

impl Hooks for CommandHooks {
    fn run(
        &self,
        event: HookEvent,
        id: InterventionId,
        candidate: &Candidate,
        commit: &str,
    ) -> Option<HookOutcome> {
        let hook = match event {
            HookEvent::Apply => self.config.on_apply.as_ref(),
            HookEvent::Revert => self.config.on_revert.as_ref(),
        }?;
        let env = [
            ("KAIZEN_EVENT", event.as_str().to_string()),
            ("KAIZEN_INTERVENTION", id.to_string()),
            ("KAIZEN_AREA", candidate.area.clone()),
            ("KAIZEN_TITLE", candidate.title.clone()),
            ("KAIZEN_COMMIT", commit.to_string()),
        ];
        let outcome = self.exec(hook, &env);
        tracing::info!(
            "kaizen intervention={id} stage=hook event={} ok={} {}",
            event.as_str(),
            outcome.ok,
            outcome.output
        );
        Some(outcome)
    }
}
