//! The LLM proposer and `kaizen diagnose`, over any OpenAI-compatible chat-completions endpoint
//! (OpenAI, vLLM, Ollama, llama.cpp's server, llama-cpp-python, ...).
//!
//! # Why reqwest and not async-openai
//! We speak the chat-completions wire format with `reqwest` directly. Two things we need are not
//! expressible through async-openai's types: reading the response body as a stream with a hard
//! size cap (an untrusted server must not make us buffer gigabytes), and llama.cpp's
//! `response_format: {"type": "json_object", "schema": …}`, which those servers need because they
//! answer HTTP 500 to OpenAI's `json_schema` format. The protocol surface we use is small
//! (one POST, `choices[0].message.{content,tool_calls}`, `finish_reason`), so the cost is low.
//!
//! # Layout
//! - [`client`]: the HTTP client (auth, timeouts, bounded retries with backoff, size cap, the four
//!   structured-output modes, tolerant JSON extraction).
//! - [`schema`]: the JSON schemas the model must answer with (every string bounded).
//! - [`prompt`]: the deterministic, size-bounded prompt ("filter first, then ask").
//! - [`validate`]: validation of every candidate (untrusted input) into [`kaizen_core::Candidate`].
//! - [`proposer`]: [`LlmProposer`], the [`kaizen_core::propose::Proposer`] implementation.
//! - [`diagnose`](mod@diagnose): ranked root-cause hypotheses — a diagnosis, not an action.
//!
//! The model never executes anything: it recommends, its output is validated here, then the
//! candidates pass the same guards as every other proposer's.
//!
//! The API key is read from the environment variable named by `llm.api_key_env` at request time;
//! it is sent only in the `Authorization` header and is redacted from every error message and
//! excerpt (a server may echo it back).

pub mod client;
pub mod diagnose;
pub mod extract;
pub mod prompt;
pub mod proposer;
pub mod rewrite;
pub mod schema;
pub mod validate;

pub use client::{Answer, ChatClient, ClientOptions, Message};
pub use diagnose::{Diagnosis, Hypothesis, diagnose, diagnose_with};
pub use prompt::{Prompt, build_prompt, build_prompt_with};
pub use proposer::LlmProposer;
pub use rewrite::rewrite_lessons;
pub use schema::{output_schema, output_schema_for};

use std::time::Duration;

/// Something went wrong talking to the model. Messages never contain the API key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The `llm` config cannot be used.
    #[error("llm config: `llm.{field}`: {message}")]
    Config {
        /// The field (`base_url`, `may_change`, `timeout`, ...).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The server could not be reached (after retries).
    #[error("cannot reach {url} after {attempts} attempt(s): {message} (is the server running?)")]
    Connect {
        /// The URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The transport error.
        message: String,
    },
    /// No answer within the timeout (after retries).
    #[error(
        "{url} did not answer within {timeout:?} ({attempts} attempt(s)); raise `llm.timeout` or use a smaller model"
    )]
    Timeout {
        /// The URL.
        url: String,
        /// The per-request timeout.
        timeout: Duration,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The server answered with an error status (after retries, for 429 and 5xx).
    #[error("{url} answered HTTP {status} ({attempts} attempt(s)): {excerpt}")]
    Http {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// How many attempts were made.
        attempts: u32,
        /// A bounded, redacted excerpt of the body.
        excerpt: String,
    },
    /// The response body exceeded the size cap.
    #[error("response too large: more than {limit} bytes from {url}")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// The model stopped at its token limit (`finish_reason: length`): the answer is cut off.
    #[error(
        "the model hit its token limit (finish_reason: length); raise `llm.max_tokens` or lower `llm.max_candidates`. Output began: {excerpt}"
    )]
    Truncated {
        /// A bounded, redacted excerpt of what it wrote.
        excerpt: String,
    },
    /// The body is not a chat-completions response.
    #[error("not a chat-completions response: {message}; body began: {excerpt}")]
    BadResponse {
        /// What is missing or wrong.
        message: String,
        /// A bounded, redacted excerpt of the body.
        excerpt: String,
    },
    /// The model's answer holds no parseable JSON object.
    #[error("the model's answer holds no JSON object: {message}; answer began: {excerpt}")]
    NoJson {
        /// Why extraction failed.
        message: String,
        /// A bounded, redacted excerpt of the answer.
        excerpt: String,
    },
    /// The JSON does not have the expected top-level shape.
    #[error("the model's answer has the wrong shape: {message}; answer began: {excerpt}")]
    Shape {
        /// What is wrong.
        message: String,
        /// A bounded, redacted excerpt of the answer.
        excerpt: String,
    },
}

/// At most `max` characters of `text` (on a char boundary), with `…` when cut, newlines flattened.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = flat.trim();
    if trimmed.chars().count() <= max {
        trimmed.to_string()
    } else {
        let mut out: String = trimmed.chars().take(max).collect();
        out.push('…');
        out
    }
}
