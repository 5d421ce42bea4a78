//! [`LlmProposer`]: asks the model for candidates and validates every one of them.

use super::LlmError;
use super::client::{ChatClient, ClientOptions};
use super::prompt::{alerting_signals, build_prompt_with, num};
use super::schema::{output_schema, output_schema_for};
use super::validate::Validator;
use async_trait::async_trait;
use kaizen_core::config::LlmConfig;
use kaizen_core::propose::{Proposals, ProposeContext, ProposeError, Proposer};
use kaizen_core::tunables::{Envelope, KnobState};
use std::path::PathBuf;
use std::sync::Arc;

/// The schema/tool name sent to the server.
const SCHEMA_NAME: &str = "kaizen_candidates";

/// A [`Proposer`] backed by an OpenAI-compatible chat-completions endpoint (name `llm`).
///
/// It only calls the model when some signal is alerting. Transport failures and unusable
/// answers are a [`ProposeError`] (the engine records it and goes on with the other proposers);
/// bad candidates inside a usable answer are [`Proposals::rejected`] with a reason.
#[derive(Debug, Clone)]
pub struct LlmProposer {
    config: LlmConfig,
    client: ChatClient,
    validator: Validator,
    repo_root: PathBuf,
    envelope: Option<Arc<Envelope>>,
}

impl LlmProposer {
    /// A proposer for `config`, editing files of the repository at `repo_root`, never any of
    /// `blocked_paths` (pass `Config::guards.blocked_paths`; `ALWAYS_BLOCKED` is added anyway).
    pub fn new(
        config: &LlmConfig,
        repo_root: PathBuf,
        blocked_paths: Vec<String>,
    ) -> Result<Self, LlmError> {
        Self::with_options(
            config,
            repo_root,
            blocked_paths,
            ClientOptions::from_config(config),
        )
    }

    /// Like [`LlmProposer::new`] with explicit transport options (timeouts below a second, fast
    /// backoff, a smaller size cap).
    pub fn with_options(
        config: &LlmConfig,
        repo_root: PathBuf,
        blocked_paths: Vec<String>,
        options: ClientOptions,
    ) -> Result<Self, LlmError> {
        let client = ChatClient::with_options(config, options)?;
        let validator = Validator::new(
            &config.may_change,
            &blocked_paths,
            repo_root.clone(),
            config.max_candidates,
        )?;
        Ok(Self {
            config: config.clone(),
            client,
            validator,
            repo_root,
            envelope: None,
        })
    }

    /// Proposes among declared tunables: the prompt lists every knob with its current value,
    /// bounds and step, and the answer's schema only admits knob names and typed, in-range
    /// values (see [`output_schema_for`]). `may_change` stays a second fence.
    pub fn with_envelope(mut self, envelope: Option<Arc<Envelope>>) -> Self {
        let envelope = envelope.filter(|e| !e.knobs.is_empty());
        self.validator = self.validator.with_envelope(envelope.clone());
        self.envelope = envelope;
        self
    }

    /// The knobs as the model sees them now (empty without tunables).
    pub fn knob_states(&self) -> Vec<KnobState> {
        let Some(env) = &self.envelope else {
            return Vec::new();
        };
        let root = self.repo_root.clone();
        env.states(|file| match std::fs::read_to_string(root.join(file)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        })
    }

    /// The HTTP client (for `diagnose_with`).
    pub fn client(&self) -> &ChatClient {
        &self.client
    }

    /// The candidate validator.
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Proposes, with the error as an [`LlmError`] rather than a [`ProposeError`].
    pub async fn propose_llm(&self, ctx: &ProposeContext) -> Result<Proposals, LlmError> {
        let alerting = alerting_signals(ctx);
        if alerting.is_empty() {
            tracing::debug!(
                "kaizen stage=propose proposer=llm: no signal is alerting; the model is not asked"
            );
            return Ok(Proposals::default());
        }
        if ctx.budget_left == 0 {
            // Anything it proposed would be blocked by the daily budget: don't pay for it.
            tracing::info!(
                "kaizen stage=propose proposer=llm: daily budget used up; the model is not asked"
            );
            return Ok(Proposals::default());
        }
        let trigger = alerting
            .iter()
            .map(|s| {
                let last = ctx
                    .latest(&s.name)
                    .map(|x| num(x.value))
                    .unwrap_or_default();
                format!("{} alerting (last {last})", s.name)
            })
            .collect::<Vec<_>>()
            .join("; ");
        let knobs = self.knob_states();
        if self.envelope.is_some() && !knobs.iter().any(|k| k.changeable) {
            tracing::info!(
                "kaizen stage=propose proposer=llm: no declared tunable can change now; the model is not asked"
            );
            return Ok(Proposals::default());
        }
        let prompt = build_prompt_with(ctx, &self.config, &knobs);
        tracing::info!(
            "kaizen stage=propose proposer=llm: asking {} ({}) about {} (≈{} prompt tokens{})",
            self.client.model(),
            self.client.url(),
            prompt.alerting.join(", "),
            prompt.approx_tokens(),
            if prompt.omitted.is_empty() {
                String::new()
            } else {
                format!("; omitted {}", prompt.omitted.join(", "))
            }
        );
        let schema = if knobs.is_empty() {
            output_schema(self.config.max_candidates)
        } else {
            output_schema_for(self.config.max_candidates, &knobs)
        };
        let answer = self
            .client
            .ask(&prompt.messages(), SCHEMA_NAME, &schema)
            .await?;
        let proposals =
            self.validator
                .validate_answer(&answer.value, ctx, &format!("llm: {trigger}"))?;
        for r in &proposals.rejected {
            tracing::warn!("kaizen stage=propose proposer=llm: rejected: {}", r.reason);
        }
        tracing::info!(
            "kaizen stage=propose proposer=llm: {} candidate(s) accepted, {} rejected",
            proposals.candidates.len(),
            proposals.rejected.len()
        );
        Ok(proposals)
    }
}

#[async_trait]
impl Proposer for LlmProposer {
    fn name(&self) -> &str {
        "llm"
    }

    async fn propose(&self, ctx: &ProposeContext) -> Result<Proposals, ProposeError> {
        self.propose_llm(ctx).await.map_err(|e| {
            tracing::warn!("kaizen stage=propose proposer=llm: failed: {e}");
            ProposeError {
                proposer: "llm".to_string(),
                message: e.to_string(),
            }
        })
    }
}
