//! Notifiers: a JSON webhook and a shell command. Delivery is best effort with a timeout; a
//! failure is reported to the engine (which records it) and never stops the loop.

use crate::source::{RunError, excerpt, run_shell};
use async_trait::async_trait;
use kaizen_core::config::{Config, NotifyConfig};
use kaizen_core::notify::{Notification, NotificationKind, Notifier, NotifyError};
use std::path::PathBuf;
use std::time::Duration;

/// POSTs each notification as JSON to a URL.
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    url: String,
    on: Vec<NotificationKind>,
    client: reqwest::Client,
}

impl WebhookNotifier {
    /// A webhook to `url` for the kinds in `on`.
    pub fn new(url: impl Into<String>, on: Vec<NotificationKind>, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            url: url.into(),
            on,
            client,
        }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        "webhook"
    }

    fn wants(&self, kind: NotificationKind) -> bool {
        self.on.contains(&kind)
    }

    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::json!({
            "kind": n.kind.as_str(),
            "intervention": n.intervention.map(|i| i.to_string()),
            "text": n.text,
            "at": n.at.to_rfc3339(),
        });
        let err = |message: String| NotifyError {
            notifier: "webhook".into(),
            message,
        };
        let resp = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| err(format!("POST failed: {}", e.without_url())))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(err(format!(
                "POST answered HTTP {}",
                resp.status().as_u16()
            )))
        }
    }
}

/// Runs a shell command per notification.
#[derive(Debug, Clone)]
pub struct CommandNotifier {
    command: String,
    cwd: PathBuf,
    on: Vec<NotificationKind>,
    timeout: Duration,
}

impl CommandNotifier {
    /// `sh -c command` in `cwd` for the kinds in `on`.
    pub fn new(
        command: impl Into<String>,
        cwd: impl Into<PathBuf>,
        on: Vec<NotificationKind>,
        timeout: Duration,
    ) -> Self {
        Self {
            command: command.into(),
            cwd: cwd.into(),
            on,
            timeout,
        }
    }
}

#[async_trait]
impl Notifier for CommandNotifier {
    fn name(&self) -> &str {
        "command"
    }

    fn wants(&self, kind: NotificationKind) -> bool {
        self.on.contains(&kind)
    }

    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        let env = [
            ("KAIZEN_NOTIFY_KIND", n.kind.as_str().to_string()),
            (
                "KAIZEN_INTERVENTION",
                n.intervention.map(|i| i.to_string()).unwrap_or_default(),
            ),
            ("KAIZEN_TEXT", n.text.clone()),
            ("KAIZEN_AT", n.at.to_rfc3339()),
        ];
        let err = |message: String| NotifyError {
            notifier: "command".into(),
            message,
        };
        match run_shell(&self.command, &self.cwd, &env, self.timeout, 16 * 1024).await {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(err(format!(
                "exited with {}: {}",
                out.status,
                excerpt(&out.stderr)
            ))),
            Err(RunError::Timeout) => Err(err(format!("timed out after {:?}", self.timeout))),
            Err(e) => Err(err(e.to_string())),
        }
    }
}

/// The notifiers `config.notify` asks for.
pub fn build_notifiers(config: &Config) -> Vec<Box<dyn Notifier>> {
    // The commands these run must never see the config's secrets.
    crate::source::scrub_env(config.secret_env.iter().cloned());
    config
        .notify
        .iter()
        .filter_map(|n: &NotifyConfig| -> Option<Box<dyn Notifier>> {
            let timeout = Duration::from_secs(n.timeout.seconds().max(1));
            match (&n.webhook, &n.command) {
                (Some(url), _) => Some(Box::new(WebhookNotifier::new(
                    url.clone(),
                    n.on.clone(),
                    timeout,
                ))),
                (None, Some(cmd)) => Some(Box::new(CommandNotifier::new(
                    cmd.clone(),
                    config.repo.clone(),
                    n.on.clone(),
                    timeout,
                ))),
                (None, None) => None,
            }
        })
        .collect()
}
