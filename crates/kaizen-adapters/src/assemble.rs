//! From a loaded `kaizen.yaml` to a running [`Engine`]: the one place that picks adapters for
//! config sections, so the CLI and embedding hosts assemble the loop the same way.

use crate::canary::build_canaries;
use crate::git::GitApplier;
use crate::source::build_sources;
use kaizen_core::apply::ApplyError;
use kaizen_core::clock::Clock;
use kaizen_core::config::Config;
use kaizen_core::engine::{Engine, EngineError, EngineSettings};
use kaizen_core::event::EngineEvent;
use kaizen_core::ledger::{Ledger, LedgerError};
use kaizen_core::lesson::Lesson;
use kaizen_core::lesson::store::LessonLoadError;
use kaizen_core::propose::Proposer;
use kaizen_core::rules::{RulesProposer, load_rules};
use kaizen_core::span::Span;
use kaizen_core::validate::Validator;
use kaizen_core::yaml::YamlError;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// The loop could not be assembled from the config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    /// The rules file is bad (file/line/field inside).
    #[error("{0}")]
    Rules(YamlError),
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The repository could not be opened.
    #[error("repository {path}: {source}")]
    Repo {
        /// The repo path.
        path: String,
        /// Why.
        source: ApplyError,
    },
    /// The LLM section could not be turned into a proposer.
    #[error("llm: {0}")]
    Llm(String),
    /// The engine refused its parts.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl AssembleError {
    /// Whether this is the user's configuration at fault (exit code 2) rather than a runtime failure.
    pub fn is_config(&self) -> bool {
        matches!(self, AssembleError::Rules(_) | AssembleError::Llm(_))
    }
}

/// The validator a config asks for.
pub fn validator_for(config: &Config) -> Box<dyn Validator> {
    match config.validate.method.as_str() {
        "simple" => Box::new(kaizen_core::validate::SimpleValidator::default()),
        _ => Box::new(kaizen_core::validate::HonestValidator::default()),
    }
}

/// The proposers a config asks for: rules (if a rules file is set) and the LLM (if `llm` is set).
pub fn proposers_for(config: &Config) -> Result<Vec<Box<dyn Proposer>>, AssembleError> {
    let mut out: Vec<Box<dyn Proposer>> = Vec::new();
    if let Some(path) = &config.rules {
        let known: BTreeSet<String> = config.signals.keys().cloned().collect();
        let rules = load_rules(path, &known).map_err(AssembleError::Rules)?;
        // A latest sample older than two observe intervals (at least 5 minutes) is stale.
        let stale = Span::from_secs((config.schedule.observe_every.seconds() * 2).max(300));
        let diagnoser = Arc::new(crate::rule_diagnose::CommandDiagnoser::new(
            config.repo.clone(),
        ));
        out.push(Box::new(
            RulesProposer::new(rules, stale).with_diagnoser(diagnoser),
        ));
    }
    if let Some(llm) = &config.llm {
        let proposer = crate::llm::LlmProposer::new(
            llm,
            config.repo.clone(),
            config.guards.blocked_paths.clone(),
        )
        .map_err(|e| AssembleError::Llm(e.to_string()))?
        .with_envelope(config.envelope.clone());
        out.push(Box::new(proposer));
    }
    Ok(out)
}

/// Builds the engine for `config` with `clock`: git applier on `config.repo`, the ledger in the
/// state dir, sources, canaries, proposers, the configured validator and `lessons`.
pub fn engine_from_config(
    config: &Config,
    clock: Arc<dyn Clock>,
    lessons: Vec<Lesson>,
) -> Result<Engine, AssembleError> {
    Ok(builder_from_config(config, clock, lessons)?.build()?)
}

/// The engine `kaizen revert` uses: [`engine_from_config`] without proposers and lessons, which
/// undoing an intervention never consults — so a rules file or a lesson broken since the apply
/// cannot stand between an operator and a revert (and a revert does not parse them: a cron
/// pair's cost, issue 12).
pub fn engine_for_revert(config: &Config, clock: Arc<dyn Clock>) -> Result<Engine, AssembleError> {
    let ledger = Ledger::open(&config.ledger_path())?;
    Ok(builder_parts(config, clock, Vec::new(), ledger, false)?.build()?)
}

/// The same as [`engine_from_config`], before `build()`: a host adds its own sources (signals
/// configured without a `source:`), proposers or notifiers.
pub fn builder_from_config(
    config: &Config,
    clock: Arc<dyn Clock>,
    lessons: Vec<Lesson>,
) -> Result<kaizen_core::engine::EngineBuilder, AssembleError> {
    let ledger = Ledger::open(&config.ledger_path())?;
    builder_with_ledger(config, clock, lessons, ledger)
}

/// Like [`builder_from_config`] with a ledger the caller opened: a read-only one
/// ([`Ledger::open_read_only`]) for commands that only look (`kaizen propose`), so they run
/// while `kaizen run` holds the state lock and cannot write.
pub fn builder_with_ledger(
    config: &Config,
    clock: Arc<dyn Clock>,
    lessons: Vec<Lesson>,
    ledger: Ledger,
) -> Result<kaizen_core::engine::EngineBuilder, AssembleError> {
    builder_parts(config, clock, lessons, ledger, true)
}

/// [`builder_with_ledger`]; `with_proposers`: the configured proposers (rules, LLM) too.
fn builder_parts(
    config: &Config,
    clock: Arc<dyn Clock>,
    lessons: Vec<Lesson>,
    ledger: Ledger,
    with_proposers: bool,
) -> Result<kaizen_core::engine::EngineBuilder, AssembleError> {
    let applier = GitApplier::open(&config.repo, config.branch.as_deref()).map_err(|source| {
        AssembleError::Repo {
            path: config.repo.display().to_string(),
            source,
        }
    })?;
    // Before any source, canary or notifier can run a command.
    crate::source::scrub_env(config.secret_env.iter().cloned());
    let clock_for_git = clock.clone();
    let mut builder = Engine::builder(EngineSettings::from_config(config))
        .clock(clock)
        .ledger(ledger)
        .applier(Box::new(applier))
        .validator(validator_for(config))
        .guards(kaizen_core::guard::chain_for(config.envelope.as_ref()))
        .sources(build_sources(config))
        .canaries(build_canaries(config))
        .sizing(kaizen_core::engine::window_sizing())
        .notifiers(crate::notify::build_notifiers(config))
        .state_dir(config.state_dir.clone())
        .lessons(lessons);
    if let Some(h) = crate::hooks::CommandHooks::from_config(config) {
        builder = builder.hooks(Box::new(h));
    }
    if let Some(git) = config.git.as_ref().filter(|g| g.publishes()) {
        builder = builder.publisher(Box::new(publisher_for(config, git, clock_for_git.clone())?));
        let reviews = config.mode == kaizen_core::config::Mode::Review
            || config
                .modes
                .values()
                .any(|m| *m == kaizen_core::config::Mode::Review);
        if reviews {
            builder =
                builder.review_desk(Box::new(publisher_for(config, git, clock_for_git.clone())?));
        }
    }
    if with_proposers {
        for p in proposers_for(config)? {
            builder = builder.proposer(p);
        }
    }
    Ok(builder)
}

/// The publisher pushing to `git.remote` (the remote must exist in the repository).
pub fn publisher_for(
    config: &Config,
    git: &kaizen_core::publish::GitConfig,
    clock: Arc<dyn Clock>,
) -> Result<crate::git::GitPublisher, AssembleError> {
    let repo_err = |source| AssembleError::Repo {
        path: config.repo.display().to_string(),
        source,
    };
    let applier = GitApplier::open(&config.repo, config.branch.as_deref())
        .map_err(repo_err)?
        .with_clock(clock);
    crate::git::GitPublisher::new(applier, git).map_err(repo_err)
}

/// Kind of the event recorded for a lesson file that could not be loaded.
pub const LESSON_INVALID: &str = "lesson_invalid";

/// Records each lesson file that could not be loaded (and so is skipped) as a
/// [`LESSON_INVALID`] event, once per file and message in any 24 h, so a daemon or a cron cycle
/// does not repeat it every run. Returns how many were recorded.
pub fn record_lesson_errors(
    engine: &mut Engine,
    errors: &[LessonLoadError],
) -> Result<usize, EngineError> {
    let now = engine.now();
    if errors.is_empty() {
        return Ok(0);
    }
    let since = Span::hours(24).before(now);
    let seen: Vec<EngineEvent> = engine
        .ledger()
        .events_between(since, now)?
        .into_iter()
        .filter(|e| e.kind == LESSON_INVALID)
        .map(|e| e.event)
        .collect();
    let mut recorded = 0;
    for e in errors {
        // Bounded: a hostile file must not put megabytes of message into the ledger.
        let event = EngineEvent::LessonInvalid {
            file: e.file.display().to_string().chars().take(500).collect(),
            message: e.to_string().chars().take(2000).collect(),
        };
        if seen.contains(&event) {
            continue;
        }
        engine.record(&event)?;
        recorded += 1;
    }
    Ok(recorded)
}

/// Git-ignores the state dir via the repository's `info/exclude` (idempotent).
pub fn exclude_state_dir(repo: &Path, state_dir: &Path) -> Result<bool, std::io::Error> {
    let git =
        git2::Repository::open(repo).map_err(|e| std::io::Error::other(e.message().to_string()))?;
    let Some(rel) = kaizen_core::config::relative_to(state_dir, repo) else {
        return Ok(false);
    };
    let exclude = git.path().join("info").join("exclude");
    let existing = std::fs::read_to_string(&exclude).unwrap_or_default();
    let line = format!("/{rel}/");
    if existing
        .lines()
        .any(|l| l.trim() == line || l.trim() == format!("{rel}/") || l.trim() == rel)
    {
        return Ok(false);
    }
    if let Some(dir) = exclude.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# kaizen state (ledger, locks)\n");
    text.push_str(&line);
    text.push('\n');
    std::fs::write(&exclude, text)?;
    Ok(true)
}

/// One learn run for `config`: the deterministic distiller, then (with `llm.rewrite_lessons`, or
/// `force_llm`) the model rewording the prose of new or updated lessons, then one commit.
/// Returns the report and notes about lessons the model could not reword.
pub async fn learn_now(
    engine: &mut Engine,
    config: &Config,
    force_llm: bool,
) -> Result<(kaizen_core::engine::LearnReport, Vec<String>), AssembleError> {
    let distiller = kaizen_core::learn::DeterministicDistiller::default();
    let (changes, load_errors) = engine.plan_learn(&distiller, &config.lessons)?;
    let mut notes = Vec::new();
    let changes = match &config.llm {
        Some(llm) if (llm.rewrite_lessons || force_llm) && !changes.is_empty() => {
            let client =
                crate::llm::ChatClient::new(llm).map_err(|e| AssembleError::Llm(e.to_string()))?;
            let (rewritten, n) = crate::llm::rewrite_lessons(&client, changes).await;
            notes = n;
            rewritten
        }
        None if force_llm => {
            return Err(AssembleError::Llm(
                "`--llm` needs an `llm` section in the config".into(),
            ));
        }
        _ => changes,
    };
    use kaizen_core::learn::Distiller as _;
    let report = engine.commit_learn(changes, load_errors, distiller.name(), &config.lessons)?;
    Ok((report, notes))
}

/// The runtime's learn step for a config: [`learn_now`] on the schedule (the model rewords new
/// lessons only with `llm.rewrite_lessons`).
pub struct ConfigLearner {
    config: Config,
}

impl ConfigLearner {
    /// A learner for `config`.
    pub fn new(config: Config) -> Self {
        Self { config }
    }
}

#[async_trait::async_trait]
impl kaizen_core::runtime::Learner for ConfigLearner {
    async fn learn(&self, engine: &mut Engine) -> Result<Vec<String>, EngineError> {
        let (report, notes) =
            learn_now(engine, &self.config, false)
                .await
                .map_err(|e| match e {
                    AssembleError::Engine(e) => e,
                    other => EngineError::Host {
                        what: "learn",
                        source: Box::new(other),
                    },
                })?;
        Ok(report.changes.into_iter().chain(notes).collect())
    }
}

/// The runtime for `config`: the engine from [`engine_from_config`], the config's schedule and
/// its learner — what `kaizen run` runs and what a host embeds.
pub fn runtime_from_config(
    config: &Config,
    clock: Arc<dyn Clock>,
    lessons: Vec<Lesson>,
) -> Result<kaizen_core::runtime::RuntimeBuilder, AssembleError> {
    runtime_for(config, engine_from_config(config, clock, lessons)?)
}

/// The runtime for an engine a host assembled itself (e.g. from [`builder_from_config`] plus
/// its own sources): the config's schedule and learner.
pub fn runtime_for(
    config: &Config,
    engine: Engine,
) -> Result<kaizen_core::runtime::RuntimeBuilder, AssembleError> {
    let schedule = kaizen_core::schedule::Schedule::new(config.schedule.clone());
    Ok(kaizen_core::runtime::Runtime::builder(engine, schedule)
        .learner(Arc::new(ConfigLearner::new(config.clone()))))
}
