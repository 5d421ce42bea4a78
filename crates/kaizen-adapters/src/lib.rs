//! kaizen-adapters: the parts of kaizen that touch the outside world.
//!
//! Public items, by module (no `error` module: each adapter reports through the core's own error
//! types — [`kaizen_core::apply::ApplyError`], [`kaizen_core::observe::SourceError`] and
//! [`kaizen_core::canary::CanaryResult`]):
//!
//! - [`git`]: [`git::GitApplier`] (implements [`kaizen_core::apply::Applier`]), plus
//!   [`git::contain`], [`git::apply_message`], [`git::revert_message`], [`git::parse_trailers`],
//!   [`git::HISTORY_WALK_LIMIT`], [`git::TRAILER_INTERVENTION`], [`git::TRAILER_REVERTS`].
//! - [`diffstat`]: [`diffstat::diff_stat`] (the files and lines one commit changed).
//! - [`source`]: [`source::CommandSource`], [`source::HttpJsonSource`],
//!   [`source::PrometheusSource`] (each implements [`kaizen_core::observe::Source`]),
//!   [`source::build_sources`], [`source::read_field`], [`source::MAX_BODY_BYTES`].
//! - [`canary`]: [`canary::CommandCanary`] (implements [`kaizen_core::canary::Canary`]),
//!   [`canary::build_canaries`].

//! - [`llm`]: [`llm::LlmProposer`] (implements [`kaizen_core::propose::Proposer`]) and
//!   [`llm::diagnose`] over any OpenAI-compatible chat-completions endpoint.
//! - [`notify`]: [`notify::WebhookNotifier`], [`notify::CommandNotifier`],
//!   [`notify::build_notifiers`].
//! - [`assemble`]: from a loaded `kaizen.yaml` to a running engine.
//! - [`serve`]: `/health` and `/metrics` over HTTP for a running runtime.
//! - [`systemd`]: `READY=1` and loop-driven `WATCHDOG=1` over `NOTIFY_SOCKET`.

pub mod assemble;
pub mod canary;
pub mod diffstat;
pub mod git;
pub mod hooks;
pub mod llm;
pub mod notify;
pub mod rule_diagnose;
pub mod serve;
pub mod source;
pub mod systemd;
