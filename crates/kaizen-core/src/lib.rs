//! kaizen-core: the domain of a self-improvement loop — observe → propose → guard → apply →
//! validate → learn — as plain data and small stage traits, plus the ledger and the engine.
//!
//! No network here: adapters (git, HTTP, LLM) live in `kaizen-adapters`.

pub mod apply;
pub mod audit;
pub mod calibrate;
pub mod canary;
pub mod clock;
pub mod config;
pub mod edit;
pub mod engine;
pub mod escalation;
pub mod event;
pub mod failpoint;
pub mod guard;
pub mod health;
pub mod hooks;
pub mod human;
pub mod intervention;
pub mod learn;
pub mod ledger;
pub mod lesson;
pub mod limits;
pub mod lock;
pub mod notify;
pub mod observe;
pub mod pause;
pub mod propose;
pub mod publish;
pub mod quantity;
pub mod retention;
pub mod review;
pub mod rules;
pub mod runtime;
pub mod schedule;
pub mod signal;
pub mod sim;
pub mod span;
pub mod status;
pub mod suppression;
pub mod tunables;
pub mod validate;
pub mod yaml;

pub use clock::{Clock, ManualClock, SystemClock};
pub use intervention::{
    Candidate, Intervention, InterventionId, Outcome, Prediction, Risk, Status,
};
pub use signal::{Better, Sample, Signal};
pub use span::Span;
