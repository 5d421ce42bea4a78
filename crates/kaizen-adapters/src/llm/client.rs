//! A small OpenAI-compatible chat-completions client: one POST per attempt, bounded retries,
//! a hard cap on the response size, and the four structured-output modes.

use super::{LlmError, excerpt, extract::first_json_object};
use futures_util::StreamExt;
use kaizen_core::config::{LlmConfig, StructuredOutput};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

/// Largest response body read by default (256 KiB): a chat answer is a few KiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Largest error body read for an excerpt.
const MAX_ERROR_BODY: usize = 4 * 1024;
/// Excerpt length in error messages.
const EXCERPT: usize = 200;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// Transport knobs. [`ClientOptions::from_config`] derives them from the `llm` section; tests
/// shorten them (the config's timeout has whole-second resolution).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Per-request timeout (connect + send + whole body).
    pub timeout: Duration,
    /// Retries after the first attempt, on timeout, connect errors, 429 and 5xx.
    pub retries: u32,
    /// First backoff; doubles on each retry. No jitter: one client sends one request at a time,
    /// and a deterministic schedule keeps tests and logs reproducible.
    pub backoff_base: Duration,
    /// Longest backoff between attempts.
    pub backoff_cap: Duration,
    /// Longest wait a `Retry-After` header may impose (longer values are clamped).
    pub retry_after_cap: Duration,
    /// Hard cap on the response body size.
    pub max_response_bytes: usize,
}

impl ClientOptions {
    /// Options for `config`: its timeout and retries, 500 ms doubling backoff capped at 8 s,
    /// `Retry-After` honoured up to 30 s, 256 KiB response cap.
    pub fn from_config(config: &LlmConfig) -> Self {
        Self {
            timeout: Duration::from_secs(config.timeout.seconds()),
            retries: config.retries,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(8),
            retry_after_cap: Duration::from_secs(30),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The wait before retry number `retry` (1-based).
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_cap)
    }
}

/// The model's parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The JSON object extracted from the answer.
    pub value: Value,
    /// The answer text (redacted), for excerpts.
    pub text: String,
    /// `finish_reason`, if the server gave one.
    pub finish_reason: Option<String>,
    /// How many HTTP attempts it took.
    pub attempts: u32,
}

/// An OpenAI-compatible chat-completions client.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key_env: Option<String>,
    mode: StructuredOutput,
    max_tokens: u32,
    temperature: f64,
    options: ClientOptions,
}

impl fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key: only the variable's name.
        f.debug_struct("ChatClient")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key_env", &self.api_key_env)
            .field("mode", &self.mode)
            .field("options", &self.options)
            .finish()
    }
}

/// Why one attempt failed.
enum Failure {
    Connect(String),
    Timeout,
    Status {
        status: u16,
        excerpt: String,
        retry_after: Option<Duration>,
    },
    Fatal(LlmError),
}

impl ChatClient {
    /// A client for `config` with [`ClientOptions::from_config`].
    pub fn new(config: &LlmConfig) -> Result<Self, LlmError> {
        Self::with_options(config, ClientOptions::from_config(config))
    }

    /// A client for `config` with explicit transport options.
    pub fn with_options(config: &LlmConfig, options: ClientOptions) -> Result<Self, LlmError> {
        let bad = |field: &str, message: String| LlmError::Config {
            field: field.to_string(),
            message,
        };
        let base = config.base_url.trim();
        let url = reqwest::Url::parse(base)
            .map_err(|e| bad("base_url", format!("{base:?} is not a URL: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad("base_url", format!("{base:?} is not an http(s) URL")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "base_url",
                "must not carry credentials; put the key in the environment variable named by `llm.api_key_env`"
                    .to_string(),
            ));
        }
        if config.model.trim().is_empty() {
            return Err(bad("model", "is empty".to_string()));
        }
        if options.timeout.is_zero() {
            return Err(bad("timeout", "must be positive".to_string()));
        }
        let loopback = matches!(
            url.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
        );
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)));
        if loopback {
            // A local server never needs a proxy; an HTTP_PROXY in the environment must not break it.
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| bad("base_url", format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            url: format!("{}/chat/completions", base.trim_end_matches('/')),
            model: config.model.clone(),
            api_key_env: config.api_key_env.clone().filter(|v| !v.trim().is_empty()),
            mode: config.structured_output,
            max_tokens: config.max_tokens,
            temperature: config.temperature,
            options,
        })
    }

    /// The endpoint (`{base_url}/chat/completions`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The structured-output mode.
    pub fn mode(&self) -> StructuredOutput {
        self.mode
    }

    /// The transport options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The API key, if `api_key_env` names a non-empty variable. Read per request, never stored.
    fn api_key(&self) -> Option<String> {
        let name = self.api_key_env.as_deref()?;
        match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => {
                tracing::warn!(
                    "kaizen stage=propose proposer=llm: environment variable {name} is unset or empty; sending no Authorization header"
                );
                None
            }
        }
    }

    /// The request body for `messages`, asking for an object matching `schema` named `name`.
    ///
    /// In `json_object` mode (llama.cpp-style servers) the schema is compiled into a grammar that
    /// expands `maxLength: N` into N nested groups; llama-cpp-python fails to parse (and its server
    /// dies on) anything much beyond ~600, so string bounds on the wire are capped at
    /// [`GRAMMAR_SAFE_MAX_LENGTH`]. The real bounds are enforced on the answer either way.
    pub fn request_body(&self, messages: &[Message], name: &str, schema: &Value) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": false,
        });
        let extra = match self.mode {
            StructuredOutput::JsonSchema => json!({
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": name, "strict": true, "schema": schema}
                }
            }),
            StructuredOutput::JsonObject => json!({
                "response_format": {"type": "json_object", "schema": grammar_safe(schema)}
            }),
            StructuredOutput::ToolCall => json!({
                "tools": [{
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": "Submit the answer. The arguments are the whole answer.",
                        "parameters": schema
                    }
                }],
                "tool_choice": {"type": "function", "function": {"name": name}}
            }),
            StructuredOutput::Text => json!({}),
        };
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        body
    }

    /// Sends `messages` and returns the JSON object the model answered with. Retries timeouts,
    /// connect errors, 429 (honouring `Retry-After` up to a cap) and 5xx, with doubling backoff.
    pub async fn ask(
        &self,
        messages: &[Message],
        name: &str,
        schema: &Value,
    ) -> Result<Answer, LlmError> {
        let key = self.api_key();
        let body = self.request_body(messages, name, schema);
        let max_attempts = self.options.retries.saturating_add(1);
        let mut attempt: u32 = 0;
        let bytes = loop {
            attempt += 1;
            let failure = match self.send_once(&body, key.as_deref()).await {
                Ok(bytes) => break bytes,
                Err(f) => f,
            };
            let (retryable, retry_after, what) = match &failure {
                Failure::Connect(m) => (true, None, format!("connect error: {m}")),
                Failure::Timeout => (
                    true,
                    None,
                    format!("timeout after {:?}", self.options.timeout),
                ),
                Failure::Status {
                    status,
                    retry_after,
                    ..
                } => (
                    *status == 429 || (500..600).contains(status),
                    *retry_after,
                    format!("HTTP {status}"),
                ),
                Failure::Fatal(_) => (false, None, String::new()),
            };
            if !retryable || attempt >= max_attempts {
                return Err(self.error_for(failure, attempt));
            }
            let wait = match retry_after {
                Some(ra) => ra.min(self.options.retry_after_cap),
                None => self.options.backoff(attempt),
            };
            tracing::warn!(
                "kaizen stage=propose proposer=llm: attempt {attempt}/{max_attempts} to {} failed ({what}); retrying in {} ms",
                self.url,
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
        };
        let answer = self.parse(&bytes, attempt, key.as_deref())?;
        tracing::debug!(
            "kaizen stage=propose proposer=llm: {} answered after {attempt} attempt(s), {} bytes, finish_reason={:?}",
            self.url,
            bytes.len(),
            answer.finish_reason
        );
        Ok(answer)
    }

    fn error_for(&self, failure: Failure, attempts: u32) -> LlmError {
        match failure {
            Failure::Connect(message) => LlmError::Connect {
                url: self.url.clone(),
                attempts,
                message,
            },
            Failure::Timeout => LlmError::Timeout {
                url: self.url.clone(),
                timeout: self.options.timeout,
                attempts,
            },
            Failure::Status {
                status, excerpt, ..
            } => LlmError::Http {
                url: self.url.clone(),
                status,
                attempts,
                excerpt,
            },
            Failure::Fatal(e) => e,
        }
    }

    async fn send_once(&self, body: &Value, key: Option<&str>) -> Result<Vec<u8>, Failure> {
        let mut req = self.http.post(&self.url).json(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(|e| transport(&e, key))?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = match read_capped(resp, MAX_ERROR_BODY).await {
                Ok(b) | Err(ReadError::TooLarge(b)) => String::from_utf8_lossy(&b).into_owned(),
                Err(ReadError::Transport(e)) => format!("(body unreadable: {e})"),
            };
            return Err(Failure::Status {
                status: status.as_u16(),
                excerpt: excerpt(&redact(&text, key), EXCERPT),
                retry_after,
            });
        }
        if resp
            .content_length()
            .is_some_and(|n| n > self.options.max_response_bytes as u64)
        {
            return Err(Failure::Fatal(self.too_large()));
        }
        match read_capped(resp, self.options.max_response_bytes).await {
            Ok(b) => Ok(b),
            Err(ReadError::TooLarge(_)) => Err(Failure::Fatal(self.too_large())),
            Err(ReadError::Transport(e)) => Err(transport(&e, key)),
        }
    }

    fn too_large(&self) -> LlmError {
        LlmError::TooLarge {
            url: self.url.clone(),
            limit: self.options.max_response_bytes,
        }
    }

    /// Reads a chat-completions body into an [`Answer`].
    fn parse(&self, bytes: &[u8], attempts: u32, key: Option<&str>) -> Result<Answer, LlmError> {
        let raw = redact(&String::from_utf8_lossy(bytes), key);
        let bad = |message: &str| LlmError::BadResponse {
            message: message.to_string(),
            excerpt: excerpt(&raw, EXCERPT),
        };
        let v: Value =
            serde_json::from_str(&raw).map_err(|e| bad(&format!("invalid JSON ({e})")))?;
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            return Err(bad(&format!(
                "the server reported an error: {}",
                excerpt(&msg, EXCERPT)
            )));
        }
        let choice = v
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| bad("no `choices[0]`"))?;
        let finish_reason = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        let message = choice
            .get("message")
            .ok_or_else(|| bad("no `choices[0].message`"))?;
        let content = message
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string);
        let args = message
            .get("tool_calls")
            .and_then(|t| t.get(0))
            .and_then(|t| t.get("function"))
            .and_then(|f| f.get("arguments"))
            .and_then(|a| match a {
                Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                Value::Object(_) => Some(a.to_string()),
                _ => None,
            });
        let text = match self.mode {
            StructuredOutput::ToolCall => args.or(content),
            _ => content.or(args),
        }
        .unwrap_or_default();
        if finish_reason.as_deref() == Some("length") {
            return Err(LlmError::Truncated {
                excerpt: excerpt(&text, EXCERPT),
            });
        }
        if text.trim().is_empty() {
            return Err(LlmError::NoJson {
                message: "the answer is empty".to_string(),
                excerpt: String::new(),
            });
        }
        let value = first_json_object(&text).ok_or_else(|| LlmError::NoJson {
            message: "no balanced, parseable {…} found".to_string(),
            excerpt: excerpt(&text, EXCERPT),
        })?;
        Ok(Answer {
            value,
            text,
            finish_reason,
            attempts,
        })
    }
}

/// `text` with every occurrence of `key` replaced by `[redacted]`.
pub(crate) fn redact(text: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if !k.is_empty() => text.replace(k, "[redacted]"),
        _ => text.to_string(),
    }
}

fn transport(e: &reqwest::Error, key: Option<&str>) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout;
    }
    // The error and its causes, e.g. "error sending request: … Connection refused".
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    Failure::Connect(excerpt(&redact(&msg, key), 300))
}

enum ReadError {
    /// The bytes read so far (up to the cap).
    TooLarge(Vec<u8>),
    Transport(reqwest::Error),
}

/// Reads a body chunk by chunk, stopping once it exceeds `cap`.
async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReadError::Transport)?;
        if out.len() + chunk.len() > cap {
            let room = cap - out.len();
            out.extend_from_slice(chunk.get(..room).unwrap_or_default());
            return Err(ReadError::TooLarge(out));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let o = ClientOptions {
            timeout: Duration::from_secs(1),
            retries: 5,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(350),
            retry_after_cap: Duration::from_secs(1),
            max_response_bytes: 10,
        };
        assert_eq!(o.backoff(1), Duration::from_millis(100));
        assert_eq!(o.backoff(2), Duration::from_millis(200));
        assert_eq!(o.backoff(3), Duration::from_millis(350));
        assert_eq!(o.backoff(60), Duration::from_millis(350));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("Bearer sk-1 x sk-1", Some("sk-1")),
            "Bearer [redacted] x [redacted]"
        );
        assert_eq!(redact("abc", None), "abc");
    }
}

/// The largest string `maxLength` sent to grammar-compiling servers (measured: llama-cpp-python
/// 0.3.36 accepts 600 and crashes at 2000).
pub const GRAMMAR_SAFE_MAX_LENGTH: u64 = 500;

/// `schema` with every `maxLength` capped at [`GRAMMAR_SAFE_MAX_LENGTH`] and patterns the
/// grammar converter cannot handle replaced.
pub fn grammar_safe(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v.as_u64()) {
                        ("maxLength", Some(n)) => Value::from(n.min(GRAMMAR_SAFE_MAX_LENGTH)),
                        ("pattern", _) if v.as_str() == Some(super::schema::CHANGE_PATTERN) => {
                            Value::from(super::schema::CHANGE_PATTERN_NO_DOT)
                        }
                        _ => grammar_safe(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(grammar_safe).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod grammar_tests {
    use super::*;

    #[test]
    fn caps_every_max_length() {
        let s = json!({"type": "object", "properties": {
            "a": {"type": "string", "maxLength": 8192},
            "b": {"type": "array", "items": {"type": "string", "maxLength": 40}}
        }});
        let capped = grammar_safe(&s);
        assert_eq!(capped["properties"]["a"]["maxLength"], 500);
        assert_eq!(capped["properties"]["b"]["items"]["maxLength"], 40);
    }
}
