//! `kaizen.yaml`: read into private serde structs (unknown keys rejected), then checked and turned
//! into [`Config`]. Every error names the file, line and field.

use crate::guard::{ALWAYS_BLOCKED, GuardPolicy};
use crate::intervention::Risk;
use crate::signal::{Better, Signal};
use crate::span::Span;
use crate::yaml::{self, YamlError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How the engine acts on candidates that pass the guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Apply, validate and revert on its own.
    #[default]
    Autonomous,
    /// Record what it would do; never commit.
    Shadow,
    /// Propose and guard; a human applies with `kaizen apply ID`.
    Manual,
    /// Propose, guard and open a review branch (`kaizen/K-…`) on the remote; a human merges.
    Review,
}

/// Where a signal's samples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct SourceSpec {
    /// A shell command whose stdout is one number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// An HTTP URL returning JSON (e.g. `/health`), read at `field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The dotted field path in the JSON (`latency.p95_ms`); with `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A Prometheus base URL (`http://127.0.0.1:9090`); with `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// A PromQL instant query returning one series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// How long a sample may take (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
}

/// What kind of source a [`SourceSpec`] is, once checked.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// Run a command, parse stdout.
    Command(String),
    /// GET a URL, read a JSON field.
    Http {
        /// URL.
        url: String,
        /// Dotted path.
        field: String,
    },
    /// Prometheus instant query.
    Prometheus {
        /// Base URL.
        url: String,
        /// PromQL.
        query: String,
    },
}

impl SourceSpec {
    /// The one kind this spec names, or why it is ambiguous/incomplete.
    pub fn kind(&self) -> Result<SourceKind, String> {
        match (&self.command, &self.http, &self.prometheus) {
            (Some(c), None, None) if !c.trim().is_empty() => Ok(SourceKind::Command(c.clone())),
            (None, Some(url), None) => Ok(SourceKind::Http {
                url: url.clone(),
                field: self
                    .field
                    .clone()
                    .ok_or("`http` needs `field` (a dotted JSON path)")?,
            }),
            (None, None, Some(url)) => Ok(SourceKind::Prometheus {
                url: url.clone(),
                query: self.query.clone().ok_or("`prometheus` needs `query`")?,
            }),
            (None, None, None) => {
                Err("a source needs one of `command`, `http` or `prometheus`".into())
            }
            (Some(c), None, None) if c.trim().is_empty() => Err("`command` is empty".into()),
            _ => Err("a source takes exactly one of `command`, `http` or `prometheus`".into()),
        }
    }
}

/// How effects on a signal are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Log scale when all values are positive (effects are ratios), else linear.
    #[default]
    Auto,
    /// Always log (values must be positive).
    Log,
    /// Always linear (effects are differences).
    Linear,
}

/// One configured signal.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalConfig {
    /// The signal.
    pub signal: Signal,
    /// Where it comes from (`None`: fed by the host, e.g. the simulator or an embedding service).
    pub source: Option<SourceKind>,
    /// Sample timeout.
    pub timeout: Span,
    /// Areas for which this signal is a guardrail (must not regress when they change).
    pub guardrail_for: Vec<String>,
    /// Effect scale.
    pub scale: Scale,
}

/// A canary for one area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// Shell command run in the repo with the change described in the environment; exit 0 = pass.
    pub command: String,
    /// How long it may take (default 5m); a timeout fails.
    #[serde(default = "default_canary_timeout")]
    pub timeout: Span,
    /// Where it runs: `repo` (default: in the repository, the change only described in
    /// `KAIZEN_CHANGE`) or `worktree` (the change applied in a temporary git worktree; such a
    /// canary runs for every change of its area).
    #[serde(default, rename = "in")]
    pub place: CanaryPlace,
    /// With `in: worktree`: also run at the current head and judge the figures against the
    /// prediction.
    #[serde(default)]
    pub compare: bool,
    /// With `compare`: how far (relative, `0.05` = 5%) the metric must move the predicted way.
    #[serde(default)]
    pub tolerance: f64,
    /// With `compare`: the JSON figure judged (default: the prediction's signal).
    #[serde(default)]
    pub metric: Option<String>,
}

/// Where a canary's command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CanaryPlace {
    /// In the repository, with the change described in the environment.
    #[default]
    Repo,
    /// In a temporary git worktree with the change applied.
    Worktree,
}

fn default_canary_timeout() -> Span {
    Span::minutes(5)
}

/// Validation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateConfig {
    /// Time after the apply before post samples count.
    pub settle: Span,
    /// How often an inconclusive window may be extended (by its own length) before `no_effect`.
    pub max_extensions: u32,
    /// An optional override of the signals' sampling interval. By default gaps are counted, and
    /// windows sized, against each signal's own cadence (the median spacing of its recorded
    /// samples, [`crate::validate::Cadence`]); an override more than 2× off the data is reported
    /// and not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_every: Option<Span>,
    /// Which validator: `honest` (default) or `simple`.
    pub method: String,
    /// How a change is judged by default: `before_after` (one window before the apply against
    /// one after) or `switchback` (the change switched off and on in randomised blocks, judged by
    /// a permutation test; see [`crate::validate::switchback`]).
    pub design: Design,
    /// Per-area designs over `design` (`designs: { cache: switchback }`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub designs: BTreeMap<String, Design>,
    /// Blocks in a switchback (even, [`SWITCHBACK_BLOCKS`]; half on, half off).
    pub switchback_blocks: usize,
    /// Whether a low-risk, reversible change whose last before/after look is inconclusive for
    /// reasons of the model (not missing data) is confirmed by a switchback instead of reverted.
    pub switchback_on_inconclusive: bool,
}

impl ValidateConfig {
    /// The design in force for `area`: its entry in `designs`, else `design`.
    pub fn design_for(&self, area: &str) -> Design {
        self.designs.get(area).copied().unwrap_or(self.design)
    }
}

/// How a change's effect is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Design {
    /// One window before the apply against one after (the honest validator).
    #[default]
    BeforeAfter,
    /// Off and on in randomised blocks after the apply settles, judged by a permutation test.
    Switchback,
}

/// The accepted range of `validate.switchback_blocks` (and it must be even): at least 4 so each
/// arm has two blocks to permute, at most 24 so a schedule stays days, not weeks.
pub const SWITCHBACK_BLOCKS: std::ops::RangeInclusive<usize> = 4..=24;

impl Default for ValidateConfig {
    fn default() -> Self {
        Self {
            settle: Span::minutes(5),
            max_extensions: 2,
            sample_every: None,
            method: "honest".to_string(),
            design: Design::BeforeAfter,
            designs: BTreeMap::new(),
            switchback_blocks: 8,
            switchback_on_inconclusive: true,
        }
    }
}

/// Daemon schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Observe every…
    pub observe_every: Span,
    /// Run a full cycle (validate, propose, guard, apply) every…
    pub cycle_every: Span,
    /// Distil lessons every…
    pub learn_every: Span,
    /// Write the meta-review of the last period (Markdown and HTML into `state_dir/reviews/`,
    /// notified with its path) every…
    pub review_every: Span,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            observe_every: Span::minutes(1),
            cycle_every: Span::minutes(5),
            learn_every: Span::hours(24),
            review_every: Span::days(7),
        }
    }
}

/// Structured-output mode for the LLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// OpenAI `response_format: json_schema`.
    JsonSchema,
    /// `response_format: json_object` plus a `schema` (llama.cpp-style servers).
    #[default]
    JsonObject,
    /// A forced tool call whose arguments are the answer.
    ToolCall,
    /// Plain text; the JSON object is extracted tolerantly.
    Text,
}

/// The `llm` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// OpenAI-compatible base URL, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// Environment variable holding the API key (the key itself is never in config or logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// How to ask for structured output.
    #[serde(default)]
    pub structured_output: StructuredOutput,
    /// Per-request timeout.
    #[serde(default = "default_llm_timeout")]
    pub timeout: Span,
    /// Most candidates taken from one answer.
    #[serde(default = "default_max_candidates")]
    pub max_candidates: u32,
    /// Prompt size bound (approximate tokens).
    #[serde(default = "default_max_prompt_tokens")]
    pub max_prompt_tokens: u32,
    /// Glob allow-list of paths its candidates may edit.
    #[serde(default)]
    pub may_change: Vec<String>,
    /// Retries on timeout/429/5xx.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Max tokens the model may answer with.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: f64,
    /// Let the model reword the `because` / `retired_when` of lessons the distiller writes
    /// (deterministic fields are never touched by it).
    #[serde(default)]
    pub rewrite_lessons: bool,
}

fn default_llm_timeout() -> Span {
    Span::from_secs(60)
}
fn default_max_candidates() -> u32 {
    3
}
fn default_max_prompt_tokens() -> u32 {
    6000
}
fn default_retries() -> u32 {
    2
}
fn default_max_tokens() -> u32 {
    1024
}

/// Where to send notifications (exactly one of `webhook` or `command`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// POST a JSON body (`kind`, `intervention`, `text`, `at`) to this URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Run this shell command with `KAIZEN_NOTIFY_KIND`, `KAIZEN_INTERVENTION`, `KAIZEN_TEXT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Which kinds to send (default: all).
    #[serde(default = "all_kinds")]
    pub on: Vec<crate::notify::NotificationKind>,
    /// Delivery timeout.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Span,
}

fn all_kinds() -> Vec<crate::notify::NotificationKind> {
    use crate::notify::NotificationKind::*;
    vec![Escalation, Applied, Validated, Reverted, Review]
}

fn default_notify_timeout() -> Span {
    Span::from_secs(10)
}

/// A checked configuration with every path resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The config file itself.
    pub path: PathBuf,
    /// Target repository root.
    pub repo: PathBuf,
    /// Branch to commit on (`None`: whatever HEAD points at).
    pub branch: Option<String>,
    /// Mode.
    pub mode: Mode,
    /// In autonomous mode, a candidate whose proposer's calibrated confidence (see
    /// [`crate::calibrate`]) is below this waits for a human's `kaizen apply` (default 0.3).
    pub confidence_threshold: f64,
    /// Per-area modes over the global `mode` (`modes: { search: manual }`).
    pub modes: BTreeMap<String, Mode>,
    /// The remote kaizen pushes to (`git:`), if any.
    pub git: Option<crate::publish::GitConfig>,
    /// Commands run after each apply / revert (`hooks:`).
    pub hooks: crate::hooks::HooksConfig,
    /// State dir (ledger lives here).
    pub state_dir: PathBuf,
    /// Signals by name.
    pub signals: BTreeMap<String, SignalConfig>,
    /// Rules file, if any.
    pub rules: Option<PathBuf>,
    /// Lesson directory.
    pub lessons: PathBuf,
    /// Guard policy (blocked paths already include the defaults).
    pub guards: GuardPolicy,
    /// Canaries by area.
    pub canaries: BTreeMap<String, CanaryConfig>,
    /// Validation settings.
    pub validate: ValidateConfig,
    /// Daemon schedule.
    pub schedule: ScheduleConfig,
    /// How long samples are kept (`retention:`; default: forever).
    pub retention: crate::retention::RetentionConfig,
    /// LLM settings, if the LLM proposer is enabled.
    pub llm: Option<LlmConfig>,
    /// Notification targets.
    pub notify: Vec<NotifyConfig>,
    /// Declared tunables and invariants (`tunables:` / `invariants:`), if any.
    pub envelope: Option<std::sync::Arc<crate::tunables::Envelope>>,
    /// Environment variables never passed to a child process (signal, canary, notify commands):
    /// `secret_env` plus `llm.api_key_env`.
    pub secret_env: Vec<String>,
    /// Where `kaizen run` serves `/health` and `/metrics`.
    pub serve: Listen,
}

/// The address kaizen serves `/health` and `/metrics` on (`serve: { listen: … }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Not configured: [`DEFAULT_LISTEN`] (loopback), and a port already taken is only a warning.
    Default,
    /// `listen: off`: no HTTP at all.
    Off,
    /// An address the operator chose (failing to bind it stops `kaizen run`).
    At(std::net::SocketAddr),
}

/// Where `/health` and `/metrics` are served when nothing is configured (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

impl Listen {
    /// Reads `off` or an `IP:PORT` address.
    pub fn parse(text: &str) -> Result<Listen, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        t.parse().map(Listen::At).map_err(|e| {
            format!("{text:?} is not an IP:PORT address (e.g. 127.0.0.1:9464) or `off`: {e}")
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeSerde {
    #[serde(default)]
    listen: Option<String>,
}

impl Config {
    /// The ledger file.
    pub fn ledger_path(&self) -> PathBuf {
        self.state_dir.join("ledger.sqlite")
    }
}

/// Longest `validate.settle` accepted.
pub const MAX_SETTLE: Span = Span::days(7);
/// Longest `guards.dedup_window` / `guards.freeze_for` accepted.
pub const MAX_GUARD_WINDOW: Span = Span::days(90);
/// Longest `schedule.*` interval accepted.
pub const MAX_SCHEDULE: Span = Span::days(30);
/// Longest source, LLM or notification timeout accepted.
pub const MAX_TIMEOUT: Span = Span::hours(1);
/// Most `validate.max_extensions` accepted.
pub const MAX_EXTENSIONS: u32 = 10;

/// A config that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Bad shape or value, with file/line/field.
    #[error("{0}")]
    Invalid(#[from] YamlError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigSerde {
    #[serde(default = "dot")]
    repo: String,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    confidence_threshold: Option<f64>,
    #[serde(default)]
    modes: BTreeMap<String, Mode>,
    #[serde(default)]
    git: Option<crate::publish::GitConfig>,
    #[serde(default)]
    hooks: crate::hooks::HooksConfig,
    #[serde(default = "default_state_dir")]
    state_dir: String,
    #[serde(default)]
    signals: BTreeMap<String, SignalSerde>,
    #[serde(default)]
    rules: Option<String>,
    #[serde(default)]
    lessons: Option<String>,
    #[serde(default)]
    guards: GuardsSerde,
    #[serde(default)]
    canaries: BTreeMap<String, CanaryConfig>,
    #[serde(default)]
    validate: ValidateConfig,
    #[serde(default)]
    schedule: ScheduleConfig,
    #[serde(default)]
    retention: crate::retention::RetentionConfig,
    #[serde(default)]
    llm: Option<LlmConfig>,
    #[serde(default)]
    notify: Vec<NotifyConfig>,
    /// Knobs inline, or the name of a file declaring them (see `tunables`).
    #[serde(default)]
    tunables: Option<serde_json::Value>,
    #[serde(default)]
    invariants: Vec<String>,
    #[serde(default)]
    secret_env: Vec<String>,
    #[serde(default)]
    serve: ServeSerde,
}

fn dot() -> String {
    ".".to_string()
}
fn default_state_dir() -> String {
    ".kaizen".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalSerde {
    #[serde(default)]
    unit: String,
    better: Better,
    #[serde(default)]
    alert_above: Option<f64>,
    #[serde(default)]
    alert_below: Option<f64>,
    #[serde(default)]
    source: Option<SourceSpec>,
    #[serde(default)]
    guardrail_for: Vec<String>,
    #[serde(default)]
    scale: Scale,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GuardsSerde {
    daily_budget: Option<u32>,
    max_concurrent: Option<u32>,
    dedup_window: Option<Span>,
    freeze_after_rollbacks: Option<u32>,
    freeze_for: Option<Span>,
    #[serde(default)]
    blocked_paths: Vec<String>,
    #[serde(default)]
    blocked_kinds: Vec<String>,
    canary_required_from: Option<Risk>,
}

impl Config {
    /// Loads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let text = yaml::decode_utf8(bytes, path)?;
        let config = Self::parse(&text, path)?;
        // A rules file that is not there is traced to the line naming it, not only to itself.
        if let Some(rules) = &config.rules
            && let Err(e) = std::fs::metadata(rules)
        {
            return Err(ConfigError::Invalid(yaml::semantic_error(
                &text,
                path,
                "rules",
                format!("cannot read the rules file {}: {e}", rules.display()),
            )));
        }
        Ok(config)
    }

    /// Parses and checks config text as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: ConfigSerde = yaml::from_str(text, path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let resolve = |p: &str| -> PathBuf {
            let pb = PathBuf::from(p);
            if pb.is_absolute() { pb } else { base.join(pb) }
        };
        let bad = |field: &str, msg: String| {
            ConfigError::Invalid(yaml::semantic_error(text, path, field, msg))
        };

        let repo = resolve(&raw.repo);
        let state_dir = resolve(&raw.state_dir);
        let confidence_threshold = raw
            .confidence_threshold
            .unwrap_or(crate::calibrate::DEFAULT_THRESHOLD);
        if !(0.0..=1.0).contains(&confidence_threshold) {
            return Err(bad(
                "confidence_threshold",
                format!("must be between 0 and 1, not {confidence_threshold}"),
            ));
        }
        let rules = raw.rules.as_deref().map(resolve);
        let lessons = resolve(raw.lessons.as_deref().unwrap_or("lessons"));
        let envelope =
            crate::tunables::load(raw.tunables.as_ref(), &raw.invariants, text, path, &base)?
                .map(std::sync::Arc::new);

        let mut signals = BTreeMap::new();
        for (name, s) in raw.signals {
            let field = format!("signals.{name}");
            if name.trim().is_empty() || name.chars().any(|c| c.is_whitespace()) {
                return Err(bad(
                    &field,
                    format!("signal name {name:?} must be non-empty without spaces"),
                ));
            }
            for (k, v) in [
                ("alert_above", s.alert_above),
                ("alert_below", s.alert_below),
            ] {
                if v.is_some_and(|x| !x.is_finite()) {
                    return Err(bad(
                        &format!("{field}.{k}"),
                        "must be a finite number".into(),
                    ));
                }
            }
            let source = match &s.source {
                Some(spec) => Some(
                    spec.kind()
                        .map_err(|m| bad(&format!("{field}.source"), m))?,
                ),
                None => None,
            };
            let timeout = s
                .source
                .as_ref()
                .and_then(|s| s.timeout)
                .unwrap_or(Span::from_secs(10));
            signals.insert(
                name.clone(),
                SignalConfig {
                    signal: Signal {
                        name,
                        unit: s.unit,
                        better: s.better,
                        alert_above: s.alert_above,
                        alert_below: s.alert_below,
                    },
                    source,
                    timeout,
                    guardrail_for: s.guardrail_for,
                    scale: s.scale,
                },
            );
        }

        let defaults = GuardPolicy::default();
        let g = raw.guards;
        if g.daily_budget == Some(0) {
            return Err(bad(
                "guards.daily_budget",
                "0 would block everything; use mode: shadow instead".into(),
            ));
        }
        if g.max_concurrent == Some(0) {
            return Err(bad(
                "guards.max_concurrent",
                "0 would block everything; use mode: shadow instead".into(),
            ));
        }
        if let Err((field, why)) = raw.retention.check() {
            return Err(bad(field, why));
        }
        if g.freeze_after_rollbacks == Some(0) {
            return Err(bad(
                "guards.freeze_after_rollbacks",
                "must be at least 1".into(),
            ));
        }
        if g.freeze_after_rollbacks
            .is_some_and(|n| n > crate::limits::VIEW_FINALIZED_PER_AREA)
        {
            return Err(bad(
                "guards.freeze_after_rollbacks",
                format!(
                    "at most {} (the most finalized interventions per area kaizen keeps in sight)",
                    crate::limits::VIEW_FINALIZED_PER_AREA
                ),
            ));
        }
        // Defaults are always blocked; the config only adds. Kaizen's own files are blocked by
        // their repo-relative paths.
        let mut blocked: Vec<String> = ALWAYS_BLOCKED.iter().map(|s| s.to_string()).collect();
        for own in [
            Some(path.to_path_buf()),
            Some(state_dir.clone()),
            rules.clone(),
            Some(lessons.clone()),
            envelope.as_ref().and_then(|e| e.file.clone()),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(rel) = relative_to(&own, &repo) {
                blocked.push(rel.clone());
                blocked.push(format!("{rel}/**"));
            }
        }
        for p in &g.blocked_paths {
            if !blocked.contains(p) {
                blocked.push(p.clone());
            }
        }
        for (i, p) in blocked.iter().enumerate() {
            if let Err(e) = globset::Glob::new(p) {
                let field = format!(
                    "guards.blocked_paths[{}]",
                    i.saturating_sub(blocked.len() - g.blocked_paths.len())
                );
                return Err(bad(&field, format!("invalid glob {p:?}: {e}")));
            }
        }
        let canary_areas = raw.canaries.keys().cloned().collect();
        for (area, c) in &raw.canaries {
            if c.command.trim().is_empty() {
                return Err(bad(&format!("canaries.{area}.command"), "is empty".into()));
            }
            if c.compare && c.place != CanaryPlace::Worktree {
                return Err(bad(
                    &format!("canaries.{area}.compare"),
                    "compares two worktrees: give `in: worktree`".into(),
                ));
            }
            if !c.tolerance.is_finite() || !(0.0..=10.0).contains(&c.tolerance) {
                return Err(bad(
                    &format!("canaries.{area}.tolerance"),
                    "give a relative tolerance between 0 and 10 (0.05 = 5%)".into(),
                ));
            }
        }
        let guards = GuardPolicy {
            daily_budget: g.daily_budget.unwrap_or(defaults.daily_budget),
            max_concurrent: g.max_concurrent.unwrap_or(defaults.max_concurrent),
            dedup_window: g.dedup_window.unwrap_or(defaults.dedup_window),
            freeze_after_rollbacks: g
                .freeze_after_rollbacks
                .unwrap_or(defaults.freeze_after_rollbacks),
            freeze_for: g.freeze_for.unwrap_or(defaults.freeze_for),
            blocked_paths: blocked,
            blocked_kinds: g.blocked_kinds,
            canary_required_from: g
                .canary_required_from
                .unwrap_or(defaults.canary_required_from),
            canary_areas,
            signals: signals.keys().cloned().collect(),
        };
        let serve = match &raw.serve.listen {
            None => Listen::Default,
            Some(text) => Listen::parse(text).map_err(|e| bad("serve.listen", e))?,
        };
        if raw.validate.method != "honest" && raw.validate.method != "simple" {
            return Err(bad(
                "validate.method",
                format!(
                    "unknown validator {:?} (honest or simple)",
                    raw.validate.method
                ),
            ));
        }
        // Sane upper bounds: a longer value is a typo, and would schedule work past any horizon.
        let mut spans: Vec<(String, Span, Span)> = vec![
            ("validate.settle".into(), raw.validate.settle, MAX_SETTLE),
            (
                "guards.dedup_window".into(),
                guards.dedup_window,
                MAX_GUARD_WINDOW,
            ),
            (
                "guards.freeze_for".into(),
                guards.freeze_for,
                MAX_GUARD_WINDOW,
            ),
            (
                "schedule.observe_every".into(),
                raw.schedule.observe_every,
                MAX_SCHEDULE,
            ),
            (
                "schedule.cycle_every".into(),
                raw.schedule.cycle_every,
                MAX_SCHEDULE,
            ),
            (
                "schedule.learn_every".into(),
                raw.schedule.learn_every,
                MAX_SCHEDULE,
            ),
            (
                "schedule.review_every".into(),
                raw.schedule.review_every,
                MAX_SCHEDULE,
            ),
        ];
        for (name, s) in &signals {
            spans.push((
                format!("signals.{name}.source.timeout"),
                s.timeout,
                MAX_TIMEOUT,
            ));
        }
        for (area, c) in &raw.canaries {
            spans.push((format!("canaries.{area}.timeout"), c.timeout, Span::days(1)));
        }
        if let Some(llm) = &raw.llm {
            spans.push(("llm.timeout".into(), llm.timeout, MAX_TIMEOUT));
        }
        for (i, n) in raw.notify.iter().enumerate() {
            spans.push((format!("notify[{i}].timeout"), n.timeout, MAX_TIMEOUT));
        }
        if let Some(every) = raw.validate.sample_every {
            spans.push(("validate.sample_every".into(), every, Span::days(1)));
        }
        for (field, value, max) in spans {
            value.at_most(max).map_err(|m| bad(&field, m))?;
        }
        if raw.validate.max_extensions > MAX_EXTENSIONS {
            return Err(bad(
                "validate.max_extensions",
                format!(
                    "{} is more than {MAX_EXTENSIONS}, the most this field accepts",
                    raw.validate.max_extensions
                ),
            ));
        }
        let blocks = raw.validate.switchback_blocks;
        if !SWITCHBACK_BLOCKS.contains(&blocks) || !blocks.is_multiple_of(2) {
            return Err(bad(
                "validate.switchback_blocks",
                format!(
                    "{blocks} is not an even number from {} to {}",
                    SWITCHBACK_BLOCKS.start(),
                    SWITCHBACK_BLOCKS.end()
                ),
            ));
        }
        if raw.validate.sample_every.is_some_and(|s| s.seconds() == 0) {
            return Err(bad("validate.sample_every", "must be positive".into()));
        }
        if let Some(llm) = &raw.llm {
            if !(llm.base_url.starts_with("http://") || llm.base_url.starts_with("https://")) {
                return Err(bad(
                    "llm.base_url",
                    format!("{:?} is not an http(s) URL", llm.base_url),
                ));
            }
            if llm.may_change.is_empty() {
                return Err(bad(
                    "llm.may_change",
                    "give the paths the LLM's candidates may edit (e.g. [\"config/**\"])".into(),
                ));
            }
            for p in &llm.may_change {
                if let Err(e) = globset::Glob::new(p) {
                    return Err(bad("llm.may_change", format!("invalid glob {p:?}: {e}")));
                }
            }
        }
        for s in [
            raw.schedule.observe_every,
            raw.schedule.cycle_every,
            raw.schedule.learn_every,
            raw.schedule.review_every,
        ] {
            if s.seconds() == 0 {
                return Err(bad("schedule", "intervals must be positive".into()));
            }
        }
        for (i, n) in raw.notify.iter().enumerate() {
            match (&n.webhook, &n.command) {
                (Some(url), None) if url.starts_with("http://") || url.starts_with("https://") => {}
                (Some(url), None) => {
                    return Err(bad(
                        &format!("notify[{i}].webhook"),
                        format!("{url:?} is not an http(s) URL"),
                    ));
                }
                (None, Some(c)) if !c.trim().is_empty() => {}
                _ => {
                    return Err(bad(
                        &format!("notify[{i}]"),
                        "give exactly one of `webhook` or `command`".into(),
                    ));
                }
            }
        }
        let mut secret_env = Vec::new();
        for (i, name) in raw.secret_env.iter().enumerate() {
            if !valid_env_name(name) {
                return Err(bad(
                    &format!("secret_env[{i}]"),
                    format!("{name:?} is not an environment variable name"),
                ));
            }
            secret_env.push(name.clone());
        }
        if let Some(name) = raw.llm.as_ref().and_then(|l| l.api_key_env.as_ref()) {
            if !valid_env_name(name) {
                return Err(bad(
                    "llm.api_key_env",
                    format!("{name:?} is not an environment variable name"),
                ));
            }
            if !secret_env.contains(name) {
                secret_env.push(name.clone());
            }
        }
        let branch = match (raw.branch, raw.git.as_ref().and_then(|g| g.branch.clone())) {
            (Some(a), Some(b)) if a != b => {
                return Err(bad(
                    "git.branch",
                    format!("`{b}` disagrees with the top-level `branch: {a}`; give one"),
                ));
            }
            (a, b) => a.or(b),
        };
        if let Some(g) = &raw.git {
            if g.remote.trim().is_empty() || g.remote.starts_with('-') {
                return Err(bad(
                    "git.remote",
                    format!("{:?} is not a remote name", g.remote),
                ));
            }
            if g.retry_min.seconds() == 0 || g.retry_max < g.retry_min {
                return Err(bad(
                    "git.retry_min",
                    "give 0 < retry_min <= retry_max".into(),
                ));
            }
            if g.timeout.seconds() == 0 || g.timeout > MAX_TIMEOUT {
                return Err(bad(
                    "git.timeout",
                    format!("give a positive timeout up to {MAX_TIMEOUT}"),
                ));
            }
        }
        let reviews = raw.mode == Mode::Review || raw.modes.values().any(|m| *m == Mode::Review);
        if reviews && raw.git.as_ref().is_none_or(|g| !g.push) {
            return Err(bad(
                "mode",
                "review mode opens branches on a remote: give `git: { remote: origin, push: true }`".into(),
            ));
        }
        for (name, h) in [
            ("on_apply", &raw.hooks.on_apply),
            ("on_revert", &raw.hooks.on_revert),
        ] {
            if let Some(h) = h {
                if h.command.trim().is_empty() {
                    return Err(bad(&format!("hooks.{name}.command"), "is empty".into()));
                }
                if h.timeout.seconds() == 0 || h.timeout > MAX_TIMEOUT {
                    return Err(bad(
                        &format!("hooks.{name}.timeout"),
                        format!("give a positive timeout up to {MAX_TIMEOUT}"),
                    ));
                }
            }
        }
        let git = raw.git.map(|g| crate::publish::GitConfig {
            branch: branch.clone(),
            ..g
        });
        Ok(Config {
            secret_env,
            path: path.to_path_buf(),
            repo,
            branch,
            mode: raw.mode,
            confidence_threshold,
            modes: raw.modes,
            git,
            hooks: raw.hooks,
            state_dir,
            signals,
            rules,
            lessons,
            guards,
            canaries: raw.canaries,
            validate: raw.validate,
            schedule: raw.schedule,
            retention: raw.retention,
            llm: raw.llm,
            notify: raw.notify,
            envelope,
            serve,
        })
    }
}

/// Whether `name` can be an environment variable (non-empty, no `=` or NUL, at most 256 bytes).
fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && !name.contains(['=', '\0'])
}

/// `path` relative to `root` as a `/`-separated string, if it lies inside it (lexically).
pub fn relative_to(path: &Path, root: &Path) -> Option<String> {
    let norm = |p: &Path| -> PathBuf {
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        let mut out = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    };
    let p = norm(path);
    let r = norm(root);
    let rel = p.strip_prefix(&r).ok()?;
    let s = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    if s.is_empty() { None } else { Some(s) }
}

/// The commented `kaizen.yaml` that `kaizen init` writes.
pub const DEFAULT_CONFIG: &str = r#"# kaizen configuration. Paths are relative to this file.
# Docs: README.md of kaizen. Durations: 30s, 5m, 2h, 24h, 7d.

# The git repository kaizen changes (one commit per intervention).
repo: .
# autonomous: apply, validate and revert on its own.
# shadow: record what it would do, never commit.  manual: a human applies with `kaizen apply ID`.
mode: autonomous
# Autonomous mode asks a human (`kaizen apply ID`) for changes from a proposer whose calibrated
# confidence (its stated one corrected by its own track record) is below this. 0: never ask.
confidence_threshold: 0.3
# Ledger and locks. Git-ignored via .git/info/exclude; kaizen never edits it through a change.
state_dir: .kaizen

# Signals: what kaizen observes. `better` says which direction is an improvement.
signals: {}
#  latency_ms:
#    unit: ms
#    better: lower
#    alert_above: 200
#    source:
#      command: "curl -s localhost:8080/metrics/latency"   # stdout: one number
#  error_rate:
#    unit: ratio
#    better: lower
#    guardrail_for: [cache]          # must not regress when the cache area changes
#    source:
#      http: http://127.0.0.1:8080/health
#      field: errors.rate

# Declarative rules (no LLM needed).
# rules: rules.yaml

# Tunables: the knobs kaizen may turn, with bounds and the largest step per change; the
# `envelope` guard refuses anything outside them. Declared here, or in a file: `tunables: tunables.yaml`.
# tunables:
#   strict: true                  # refuse changes to undeclared keys
#   cache_mb: { file: config/app.yaml, type: int, min: 16, max: 1024, max_step: 2x }
#   workers:  { file: config/app.yaml, type: int, min: 1, max: 32, max_step: "+4" }
# invariants:
#   - "workers * cache_mb <= 8192"

# Lessons directory (YAML files, committed by the distiller).
lessons: lessons

guards:
  daily_budget: 5             # interventions applied per rolling 24h
  max_concurrent: 2           # applied but not yet validated
  dedup_window: 2h            # same area + same target
  freeze_after_rollbacks: 3   # consecutive rollbacks that freeze an area...
  freeze_for: 24h             # ...for this long
  canary_required_from: medium
  blocked_paths: []           # added to: kaizen's own files, .git/**, .gitattributes, .gitmodules, *.pem, *.key, .env*, secrets/**
  blocked_kinds: []

# Canaries per area; risk >= canary_required_from needs one, else the candidate goes to backlog.
canaries: {}
#  cache:
#    command: "./scripts/canary.sh"   # exit 0 = pass; KAIZEN_* variables describe the change
#    timeout: 5m

validate:
  settle: 5m          # wait after apply before post-change samples count
  max_extensions: 2   # inconclusive windows are extended this often, then no_effect
  # sample_every: 1m  # optional: by default gaps are counted against each signal's own
                      # cadence (median spacing of its samples); an override > 2x off is reported
  method: honest      # honest (robust statistics) or simple (before/after medians)
  design: before_after          # or switchback: off/on in randomised blocks, permutation test
  # designs: { cache: switchback }  # per area, over `design`
  switchback_blocks: 8          # even, 4..=24 (half on, half off)
  switchback_on_inconclusive: true  # a low-risk change with a rollback, inconclusive at its last
                                # look (not for missing data), is confirmed by a switchback

# Environment variables never passed to signal, canary or notify commands (llm.api_key_env is
# always added).
secret_env: []

# Notifications (escalations always deserve one).
notify: []
#  - webhook: https://hooks.example.com/kaizen      # POST {kind, intervention, text, at}
#    on: [escalation, reverted]
#  - command: "logger -t kaizen \"$KAIZEN_TEXT\""

schedule:             # for `kaizen run` (daemon)
  observe_every: 1m
  cycle_every: 5m
  learn_every: 24h
  review_every: 7d    # the meta-review, written into state_dir/reviews/ and notified

# `kaizen run` serves /health and /metrics on 127.0.0.1:9464 (loopback) unless told otherwise
# (`kaizen run --listen ADDR`, or here; `off`: not at all).
# serve:
#   listen: 127.0.0.1:9464

retention:            # so the ledger does not grow without bound (omit: keep everything)
  raw: 90d            # raw samples; older ones are folded into hourly aggregates (>= 14d)
  hourly: 366d        # hourly aggregates (count, mean, min, max per signal and hour)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_CONFIG: &str = r#"# kaizen.yaml
repo: .
mode: autonomous
state_dir: .kaizen
signals:
  latency_ms:
    unit: ms
    better: lower
    alert_above: 200
    source:
      command: "cat /srv/metrics/latency"
rules: rules.yaml
guards:
  daily_budget: 5
  max_concurrent: 2
  dedup_window: 2h
  freeze_after_rollbacks: 3
  freeze_for: 24h
  canary_required_from: medium
validate:
  settle: 5m
"#;

    #[test]
    fn issue_example_loads() {
        let c = Config::parse(ISSUE_CONFIG, Path::new("/srv/app/kaizen.yaml")).unwrap();
        assert_eq!(c.repo, PathBuf::from("/srv/app/."));
        assert_eq!(c.guards.daily_budget, 5);
        assert_eq!(c.guards.dedup_window, Span::hours(2));
        assert_eq!(c.validate.settle, Span::minutes(5));
        let s = &c.signals["latency_ms"];
        assert_eq!(
            s.source,
            Some(SourceKind::Command("cat /srv/metrics/latency".into()))
        );
        assert!(c.guards.blocked_paths.contains(&"kaizen.yaml".to_string()));
        assert!(c.guards.blocked_paths.contains(&".kaizen/**".to_string()));
        assert!(c.guards.blocked_paths.contains(&"rules.yaml".to_string()));
        assert!(c.guards.blocked_paths.contains(&".git/**".to_string()));
    }

    #[test]
    fn default_config_loads() {
        let c = Config::parse(DEFAULT_CONFIG, Path::new("kaizen.yaml")).unwrap();
        assert_eq!(c.mode, Mode::Autonomous);
        assert!(c.signals.is_empty());
    }

    #[test]
    fn switchback_design_is_set_per_area_over_the_default() {
        let text = ISSUE_CONFIG.replace(
            "validate:\n",
            "validate:\n  designs: { cache: switchback }\n  switchback_blocks: 12\n",
        );
        let c = Config::parse(&text, Path::new("kaizen.yaml")).unwrap();
        assert_eq!(c.validate.design_for("cache"), Design::Switchback);
        assert_eq!(c.validate.design_for("search"), Design::BeforeAfter);
        assert_eq!(c.validate.switchback_blocks, 12);
        assert!(c.validate.switchback_on_inconclusive);
        let c = Config::parse(DEFAULT_CONFIG, Path::new("kaizen.yaml")).unwrap();
        assert_eq!(c.validate.switchback_blocks, 8);
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let text = ISSUE_CONFIG.replace("daily_budget: 5", "daily_budget: five");
        let e = Config::parse(&text, Path::new("kaizen.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("kaizen.yaml:14"), "{e}");
        assert!(e.contains("guards.daily_budget"), "{e}");

        let text = ISSUE_CONFIG.replace("dedup_window: 2h", "dedup_window: 2 hours");
        let e = Config::parse(&text, Path::new("kaizen.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("guards.dedup_window"), "{e}");

        let text = ISSUE_CONFIG.replace("better: lower", "better: down");
        let e = Config::parse(&text, Path::new("kaizen.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("signals.latency_ms.better") || e.contains("better"),
            "{e}"
        );

        let text = ISSUE_CONFIG.replace("daily_budget: 5", "daily_budget: 0");
        let e = Config::parse(&text, Path::new("kaizen.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kaizen.yaml:14") && e.contains("guards.daily_budget"),
            "{e}"
        );

        let text = ISSUE_CONFIG.replace("validate:\n", "validate:\n  switchback_blocks: 7\n");
        let e = Config::parse(&text, Path::new("kaizen.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("validate.switchback_blocks"), "{e}");
        assert!(e.contains("not an even number from 4 to 24"), "{e}");

        let text = format!("{ISSUE_CONFIG}colour: blue\n");
        let e = Config::parse(&text, Path::new("kaizen.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
