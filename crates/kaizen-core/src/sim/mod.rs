//! A deterministic, seeded simulated host, and scenarios that run the engine against it.
//!
//! - [`model`]: signals generated from a model — base level, trend, daily and weekly cycles,
//!   AR(1) noise with heavy tails, spikes — whose level depends on config values in the simulated
//!   service's git working tree, plus faults injected at given times (leaks, steps, spike bursts,
//!   noisy periods, guardrails that worsen past a config threshold). A committed change (and its
//!   revert) really changes the future samples.
//! - [`SimSource`]: the host as a [`crate::observe::Source`].
//! - [`Scenario`]: one YAML file with the host model, the repository's initial files, the kaizen
//!   config, the rules and the expected outcomes (see `examples/scenarios/`).
//! - [`run_scenario`]: runs the engine on a [`crate::ManualClock`] through the scenario (a
//!   simulated week in seconds) and checks the expectations.
//!
//! ```text
//! let scenario = Scenario::load(Path::new("examples/scenarios/leak-fixed.yaml"))?;
//! let layout = sim::prepare(&scenario, workdir, true)?;            // files + `git init` + commit
//! let applier = GitApplier::open(&layout.repo, None)?;
//! let result = sim::run_scenario(&scenario, workdir, Box::new(applier), validator, |r| print(r)).await?;
//! print!("{}", result.render());
//! ```

pub mod diagnose;
pub mod direct;
pub mod envelope;
pub mod model;
pub mod runner;
pub mod scenario;
pub mod source;

pub use direct::DirectApplier;
pub use model::HostModel;
pub use runner::{
    InterventionReport, Layout, ReviewReport, ScenarioResult, SignalFigures, SimOptions, prepare,
    run_scenario, run_scenario_with,
};
pub use scenario::{Count, Expect, ExpectationResult, Scenario};
pub use source::SimSource;

use crate::config::ConfigError;
use crate::engine::EngineError;
use crate::ledger::LedgerError;
use crate::yaml::YamlError;
use std::path::PathBuf;

/// A scenario that could not be read or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The scenario file is malformed (file, line and field named).
    #[error("{0}")]
    Invalid(YamlError),
    /// The work directory already holds a repository with files.
    #[error("{path} already exists and is not empty: give a fresh work directory")]
    NotFresh {
        /// The repository directory.
        path: PathBuf,
    },
    /// A `git` command failed while preparing the repository.
    #[error("`{command}` failed: {message}")]
    Git {
        /// The command.
        command: String,
        /// Its error output.
        message: String,
    },
    /// The generated kaizen config did not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The runtime the scenario runs on failed (the state lock, a lost engine).
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// The scenarios shipped in `examples/scenarios/`, by name, embedded in the library so `kaizen demo`
/// and `kaizen sim NAME` work without the files.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "demo",
        include_str!("../../../../examples/scenarios/demo.yaml"),
    ),
    (
        "leak-fixed",
        include_str!("../../../../examples/scenarios/leak-fixed.yaml"),
    ),
    (
        "no-effect",
        include_str!("../../../../examples/scenarios/no-effect.yaml"),
    ),
    (
        "guardrail-regression",
        include_str!("../../../../examples/scenarios/guardrail-regression.yaml"),
    ),
    (
        "noisy-temptation",
        include_str!("../../../../examples/scenarios/noisy-temptation.yaml"),
    ),
    (
        "needs-canary",
        include_str!("../../../../examples/scenarios/needs-canary.yaml"),
    ),
    (
        "freeze",
        include_str!("../../../../examples/scenarios/freeze.yaml"),
    ),
    (
        "diagnose-transient",
        include_str!("../../../../examples/scenarios/diagnose-transient.yaml"),
    ),
    (
        "switchback-confirms",
        include_str!("../../../../examples/scenarios/switchback-confirms.yaml"),
    ),
];

/// The name of the scenario `kaizen demo` runs.
pub const DEMO: &str = "demo";

/// A shipped scenario by name (`demo`, `leak-fixed`, ...), parsed.
pub fn builtin(name: &str) -> Option<Result<Scenario, SimError>> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(n, text)| {
        Scenario::parse(text, &PathBuf::from(format!("examples/scenarios/{n}.yaml")))
    })
}
