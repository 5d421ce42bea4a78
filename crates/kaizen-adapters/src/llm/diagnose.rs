//! `kaizen diagnose`: ranked root-cause hypotheses for the alerting signals — a diagnosis, not
//! an action. Nothing here produces edits.

use super::client::ChatClient;
use super::prompt::{alerting_signals, build_diagnosis_prompt};
use super::schema::{MAX_CAUSE, MAX_CHECK_NEXT, MAX_EVIDENCE, MAX_HYPOTHESES, diagnosis_schema};
use super::{LlmError, excerpt};
use chrono::{DateTime, Utc};
use kaizen_core::config::LlmConfig;
use kaizen_core::propose::ProposeContext;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The schema/tool name sent to the server.
const SCHEMA_NAME: &str = "kaizen_diagnosis";

/// One root-cause hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    /// 1 = most likely (renumbered 1..n after validation).
    pub rank: u32,
    /// The suspected cause.
    pub cause: String,
    /// What in the data points to it.
    pub evidence: String,
    /// What a human should check next.
    pub check_next: String,
    /// Stated probability, 0..1.
    pub confidence: f64,
}

/// A diagnosis of the alerting signals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// When it was made (the context's now).
    pub at: DateTime<Utc>,
    /// The model asked.
    pub model: String,
    /// The alerting signals it is about.
    pub signals: Vec<String>,
    /// Ranked hypotheses, most likely first. Empty when nothing was alerting.
    pub hypotheses: Vec<Hypothesis>,
    /// Hypotheses the model gave that failed validation, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
    /// A note for the reader (e.g. "nothing is alerting; the model was not asked").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "diagnosis at {} by {} for: {}",
            self.at.format("%Y-%m-%d %H:%M:%SZ"),
            self.model,
            if self.signals.is_empty() {
                "(nothing alerting)".to_string()
            } else {
                self.signals.join(", ")
            }
        )?;
        if let Some(n) = &self.note {
            writeln!(f, "  {n}")?;
        }
        for h in &self.hypotheses {
            writeln!(
                f,
                "{}. {} (confidence {:.2})",
                h.rank, h.cause, h.confidence
            )?;
            writeln!(f, "   evidence: {}", h.evidence)?;
            writeln!(f, "   check next: {}", h.check_next)?;
        }
        for r in &self.rejected {
            writeln!(f, "  (rejected: {r})")?;
        }
        Ok(())
    }
}

/// Diagnoses the alerting signals in `ctx` with the model in `config`. Sends only the alerting
/// signals (with trends) and recent decisions; does not call the model when nothing alerts.
pub async fn diagnose(config: &LlmConfig, ctx: &ProposeContext) -> Result<Diagnosis, LlmError> {
    let client = ChatClient::new(config)?;
    diagnose_with(&client, config.max_prompt_tokens, ctx).await
}

/// [`diagnose`] with an existing client (e.g. one with short test timeouts).
pub async fn diagnose_with(
    client: &ChatClient,
    max_prompt_tokens: u32,
    ctx: &ProposeContext,
) -> Result<Diagnosis, LlmError> {
    let mut d = Diagnosis {
        at: ctx.now,
        model: client.model().to_string(),
        signals: alerting_signals(ctx)
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        hypotheses: Vec::new(),
        rejected: Vec::new(),
        note: None,
    };
    if d.signals.is_empty() {
        d.note = Some("nothing is alerting; the model was not asked".to_string());
        return Ok(d);
    }
    let prompt = build_diagnosis_prompt(ctx, max_prompt_tokens);
    if !prompt.omitted.is_empty() {
        d.note = Some(format!(
            "omitted from the prompt for size: {}",
            prompt.omitted.join(", ")
        ));
    }
    tracing::info!(
        "kaizen stage=diagnose: asking {} about {}",
        client.model(),
        d.signals.join(", ")
    );
    let answer = client
        .ask(&prompt.messages(), SCHEMA_NAME, &diagnosis_schema())
        .await?;
    let list = answer
        .value
        .get("hypotheses")
        .and_then(Value::as_array)
        .ok_or_else(|| LlmError::Shape {
            message: "no `hypotheses` list".to_string(),
            excerpt: excerpt(&answer.text, 200),
        })?;
    let mut kept: Vec<Hypothesis> = Vec::new();
    for (i, item) in list.iter().enumerate().take(MAX_HYPOTHESES * 2) {
        match hypothesis(item) {
            Ok(h) if kept.len() < MAX_HYPOTHESES => kept.push(h),
            Ok(_) => d.rejected.push(format!(
                "hypothesis {}: beyond the first {MAX_HYPOTHESES}",
                i + 1
            )),
            Err(reason) => d.rejected.push(format!(
                "hypothesis {}: {reason}; was: {}",
                i + 1,
                excerpt(&item.to_string(), 200)
            )),
        }
    }
    // Stable: by the model's rank, then its order; then renumbered 1..n.
    kept.sort_by_key(|h| h.rank);
    for (i, h) in kept.iter_mut().enumerate() {
        h.rank = i as u32 + 1;
    }
    d.hypotheses = kept;
    Ok(d)
}

fn hypothesis(v: &Value) -> Result<Hypothesis, String> {
    let o = v.as_object().ok_or("not an object")?;
    let text = |f: &str, max: usize| -> Result<String, String> {
        let s = o
            .get(f)
            .and_then(Value::as_str)
            .map(str::trim)
            .ok_or_else(|| format!("`{f}` must be a string"))?;
        if s.is_empty() {
            return Err(format!("`{f}` is empty"));
        }
        if s.chars().count() > max {
            return Err(format!("`{f}` is longer than {max} characters"));
        }
        Ok(s.to_string())
    };
    let rank = o
        .get("rank")
        .and_then(Value::as_u64)
        .filter(|r| (1..=MAX_HYPOTHESES as u64).contains(r))
        .ok_or_else(|| format!("`rank` must be an integer from 1 to {MAX_HYPOTHESES}"))?;
    let confidence = o
        .get("confidence")
        .and_then(Value::as_f64)
        .filter(|c| (0.0..=1.0).contains(c))
        .ok_or("`confidence` must be a number from 0 to 1")?;
    Ok(Hypothesis {
        rank: rank as u32,
        cause: text("cause", MAX_CAUSE)?,
        evidence: text("evidence", MAX_EVIDENCE)?,
        check_next: text("check_next", MAX_CHECK_NEXT)?,
        confidence,
    })
}
