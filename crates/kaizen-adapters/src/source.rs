//! Sources that sample one signal each: a shell command, an HTTP JSON field, a Prometheus query.
//!
//! Every source returns exactly one finite value or an error naming what went wrong; a missing
//! value is never reported as zero.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kaizen_core::config::{Config, SourceKind};
use kaizen_core::observe::{Source, SourceError};
use kaizen_core::signal::Sample;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest HTTP response body a source reads (1 MiB); larger bodies are an error.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest command output kept (64 KiB); a source command printing more is an error.
const MAX_COMMAND_OUTPUT: usize = 64 * 1024;
/// Longest excerpt of foreign text (stderr, bodies) put into an error message.
const EXCERPT_CHARS: usize = 400;

// ---------------------------------------------------------------------------------------------
// Shared helpers (also used by the canary)

/// What a finished shell command produced.
#[derive(Debug)]
pub(crate) struct RunOutput {
    pub(crate) status: std::process::ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stdout_truncated: bool,
    pub(crate) stderr: Vec<u8>,
}

/// Why a shell command did not finish.
#[derive(Debug)]
pub(crate) enum RunError {
    /// `sh` could not be started.
    Spawn(std::io::Error),
    /// It ran past its timeout and was killed (with its whole process group).
    Timeout,
    /// Reading its output or waiting for it failed.
    Io(std::io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "could not start `sh`: {e}"),
            RunError::Timeout => f.write_str("timed out; killed"),
            RunError::Io(e) => write!(f, "i/o error while running: {e}"),
        }
    }
}

/// Reads `reader` to the end, keeping at most `limit` bytes (the rest is drained and dropped so
/// the writer never blocks). Returns the kept bytes and whether anything was dropped.
async fn read_bounded<R: AsyncRead + Unpin>(
    reader: Option<R>,
    limit: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut reader) = reader else {
        return Ok((Vec::new(), false));
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        if n > room {
            truncated = true;
        }
    }
}

/// Environment variables removed from every child's environment (see [`scrub_env`]).
static SCRUBBED_ENV: std::sync::RwLock<std::collections::BTreeSet<String>> =
    std::sync::RwLock::new(std::collections::BTreeSet::new());

/// Marks `names` secret for this process: no command kaizen runs from now on (signal sources,
/// canaries, notifiers) inherits them. Additive, so engines sharing a process only scrub more.
pub fn scrub_env<I, S>(names: I)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut set = SCRUBBED_ENV
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    set.extend(names.into_iter().map(Into::into));
}

/// The variables currently scrubbed from children.
pub fn scrubbed_env() -> Vec<String> {
    SCRUBBED_ENV
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

/// Runs `sh -c command` in `cwd` with extra `env` (and without any [`scrub_env`] variable), in its
/// own process group; on timeout the whole group is killed. Output is bounded to `limit` bytes per
/// stream.
pub(crate) async fn run_shell(
    command: &str,
    cwd: &Path,
    env: &[(&str, String)],
    timeout: Duration,
    limit: usize,
) -> Result<RunOutput, RunError> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    for name in scrubbed_env() {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v.replace('\0', ""));
    }
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let (out, err) = tokio::join!(read_bounded(stdout, limit), read_bounded(stderr, limit));
        let status = child.wait().await;
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((out, err, status)) => {
            let (stdout, stdout_truncated) = out.map_err(RunError::Io)?;
            let (stderr, _) = err.map_err(RunError::Io)?;
            let status = status.map_err(RunError::Io)?;
            Ok(RunOutput {
                status,
                stdout,
                stdout_truncated,
                stderr,
            })
        }
        Err(_) => {
            kill_group(pid).await;
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(RunError::Timeout)
        }
    }
}

/// Kills the process group led by `pid` (children of the shell included).
async fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid {
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// A bounded, single-line excerpt of foreign text for an error message (keeps the end, where
/// errors usually are).
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let n = flat.chars().count();
    if n <= EXCERPT_CHARS {
        flat
    } else {
        let tail: String = flat.chars().skip(n - EXCERPT_CHARS).collect();
        format!("…{tail}")
    }
}

/// A human spelling of a timeout (`300ms`, `10s`, `5m`).
pub(crate) fn show_duration(d: Duration) -> String {
    if d.as_millis() < 1000 || d.subsec_millis() != 0 {
        format!("{}ms", d.as_millis())
    } else {
        kaizen_core::span::Span::from_secs(d.as_secs()).to_string()
    }
}

/// Parses a command's stdout: exactly one finite number (surrounding whitespace allowed).
fn parse_number(stdout: &[u8]) -> Result<f64, String> {
    let text = std::str::from_utf8(stdout)
        .map_err(|_| "stdout is not UTF-8 text; expected one number".to_string())?;
    let t = text.trim();
    if t.is_empty() {
        return Err("printed nothing on stdout; expected exactly one number".to_string());
    }
    if t.split_whitespace().count() > 1 {
        return Err(format!(
            "printed {:?}; expected exactly one number",
            excerpt(t.as_bytes())
        ));
    }
    let v: f64 = t
        .parse()
        .map_err(|_| format!("printed {:?}, which is not a number", excerpt(t.as_bytes())))?;
    if !v.is_finite() {
        return Err(format!("printed {t:?}, which is not a finite number"));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Command

/// Samples a signal by running `sh -c <command>`; stdout must be exactly one finite number.
#[derive(Debug, Clone)]
pub struct CommandSource {
    name: String,
    command: String,
    cwd: PathBuf,
    timeout: Duration,
}

impl CommandSource {
    /// A source for `signal` running `command` in `cwd`, killed after `timeout`.
    pub fn new(
        signal: impl Into<String>,
        command: impl Into<String>,
        cwd: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Self {
        Self {
            name: signal.into(),
            command: command.into(),
            cwd: cwd.into(),
            timeout,
        }
    }
}

#[async_trait]
impl Source for CommandSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        let err = |m: String| SourceError::new(&self.name, m);
        let out = run_shell(
            &self.command,
            &self.cwd,
            &[],
            self.timeout,
            MAX_COMMAND_OUTPUT,
        )
        .await
        .map_err(|e| match e {
            RunError::Timeout => err(format!(
                "command timed out after {}; killed",
                show_duration(self.timeout)
            )),
            RunError::Spawn(e) => err(format!(
                "could not start `sh` in {}: {e}",
                self.cwd.display()
            )),
            other => err(format!("command failed: {other}")),
        })?;
        if !out.status.success() {
            let stderr = excerpt(&out.stderr);
            return Err(err(if stderr.is_empty() {
                format!("command exited with {}", out.status)
            } else {
                format!("command exited with {}: {stderr}", out.status)
            }));
        }
        if out.stdout_truncated {
            return Err(err(format!(
                "command printed more than {} KiB; expected exactly one number",
                MAX_COMMAND_OUTPUT / 1024
            )));
        }
        let value = parse_number(&out.stdout).map_err(|m| err(format!("command {m}")))?;
        Ok(vec![Sample::new(&self.name, now, value)])
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("kaizen/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// `url` without its password, for messages and logs.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// Describes a request error without its URL (which is shown, redacted, by the caller).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", show_duration(timeout));
    }
    let mut parts = Vec::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
}

/// GETs `url` and returns (status, body), the body bounded to [`MAX_BODY_BYTES`].
async fn get_bounded(
    client: &reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
    let shown = redact(url.as_str());
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {shown}: {}", describe(&e.without_url(), timeout)))?;
    let status = resp.status();
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(format!("GET {shown}: response body is larger than 1 MiB"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        format!(
            "GET {shown}: reading the body: {}",
            describe(&e.without_url(), timeout)
        )
    })? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("GET {shown}: response body is larger than 1 MiB"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Reads the number at a dotted `field` path (`latency.p95_ms`, `items.0.v`) of a JSON document.
/// Numbers and numeric strings are accepted; anything else is an error naming the field.
pub fn read_field(doc: &serde_json::Value, field: &str) -> Result<f64, String> {
    let segs: Vec<&str> = field.split('.').collect();
    if field.is_empty() || segs.iter().any(|s| s.is_empty()) {
        return Err(format!("field path `{field}` is not a valid dotted path"));
    }
    let mut node = doc;
    for (i, seg) in segs.iter().enumerate() {
        let at = if i == 0 {
            "the document".to_string()
        } else {
            format!("`{}`", segs[..i].join("."))
        };
        node = match node {
            serde_json::Value::Object(map) => map
                .get(*seg)
                .ok_or_else(|| format!("field `{field}` not found: {at} has no key `{seg}`"))?,
            serde_json::Value::Array(items) => {
                let idx: usize = seg.parse().map_err(|_| {
                    format!("field `{field}`: {at} is a list, `{seg}` is not an index")
                })?;
                items.get(idx).ok_or_else(|| {
                    format!(
                        "field `{field}` not found: {at} has {} items, no index {idx}",
                        items.len()
                    )
                })?
            }
            other => {
                return Err(format!(
                    "field `{field}`: {at} is {}, cannot read `{seg}` in it",
                    json_type(other)
                ));
            }
        };
    }
    let value = match node {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match value {
        Some(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "field `{field}` is {} ({}), not a finite number",
            json_type(node),
            excerpt(node.to_string().as_bytes())
        )),
    }
}

/// Samples a signal from a numeric field of a JSON document served over HTTP (GET).
#[derive(Debug, Clone)]
pub struct HttpJsonSource {
    name: String,
    url: String,
    field: String,
    timeout: Duration,
    client: Result<reqwest::Client, String>,
}

impl HttpJsonSource {
    /// A source for `signal` reading `field` (dotted path) from the JSON at `url`.
    pub fn new(
        signal: impl Into<String>,
        url: impl Into<String>,
        field: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            name: signal.into(),
            url: url.into(),
            field: field.into(),
            timeout,
            client: client(timeout),
        }
    }
}

#[async_trait]
impl Source for HttpJsonSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        let err = |m: String| SourceError::new(&self.name, m);
        let client = self.client.as_ref().map_err(|m| err(m.clone()))?;
        let shown = redact(&self.url);
        let url =
            reqwest::Url::parse(&self.url).map_err(|e| err(format!("invalid URL {shown}: {e}")))?;
        let (status, body) = get_bounded(client, url, self.timeout).await.map_err(err)?;
        if !status.is_success() {
            return Err(err(format!(
                "GET {shown} answered HTTP {status}: {}",
                excerpt(&body)
            )));
        }
        let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            err(format!(
                "GET {shown}: the response is not JSON ({e}): {}",
                excerpt(&body)
            ))
        })?;
        let value = read_field(&doc, &self.field).map_err(|m| err(format!("GET {shown}: {m}")))?;
        Ok(vec![Sample::new(&self.name, now, value)])
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus

/// Samples a signal with a Prometheus instant query that must return exactly one series (or a
/// scalar).
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    name: String,
    base: String,
    query: String,
    timeout: Duration,
    client: Result<reqwest::Client, String>,
}

impl PrometheusSource {
    /// A source for `signal` running `query` against the Prometheus at `base`
    /// (e.g. `http://127.0.0.1:9090`).
    pub fn new(
        signal: impl Into<String>,
        base: impl Into<String>,
        query: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            name: signal.into(),
            base: base.into(),
            query: query.into(),
            timeout,
            client: client(timeout),
        }
    }
}

fn prom_value(pair: &serde_json::Value) -> Result<f64, String> {
    let raw = pair
        .as_array()
        .and_then(|a| a.get(1))
        .ok_or_else(|| format!("malformed sample {}", excerpt(pair.to_string().as_bytes())))?;
    let text = match raw {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("the sample value {text:?} is not a finite number")),
    }
}

/// The one value of a Prometheus instant-query answer (`doc`, already parsed JSON) for `q`;
/// `status` and `shown` (the redacted endpoint) only go into messages.
fn prometheus_value(
    doc: &serde_json::Value,
    q: &str,
    status: &str,
    shown: &str,
) -> Result<f64, String> {
    let st = doc.get("status").and_then(|s| s.as_str()).unwrap_or("");
    if st != "success" {
        let etype = doc
            .get("errorType")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown");
        let emsg = doc.get("error").and_then(|s| s.as_str()).unwrap_or("");
        return Err(format!(
            "query `{q}` failed (HTTP {status}, status {:?}): {}: {}",
            excerpt(st.as_bytes()),
            excerpt(etype.as_bytes()),
            excerpt(emsg.as_bytes())
        ));
    }
    let data = doc
        .get("data")
        .ok_or_else(|| format!("{shown}: the answer has no `data`"))?;
    let rtype = data
        .get("resultType")
        .and_then(|s| s.as_str())
        .unwrap_or("");
    let result = data.get("result").unwrap_or(&serde_json::Value::Null);
    match rtype {
        "vector" => {
            let series = result.as_array().map(Vec::as_slice).unwrap_or_default();
            match series {
                [one] => prom_value(one.get("value").unwrap_or(&serde_json::Value::Null)),
                [] => Err(format!(
                    "query `{q}` returned no series (0 samples); it must return exactly one"
                )),
                many => Err(format!(
                    "query `{q}` returned {} series; it must return exactly one (aggregate it, e.g. with sum() or max())",
                    many.len()
                )),
            }
        }
        "scalar" => prom_value(result),
        other => Err(format!(
            "query `{q}` returned a {:?} result; only an instant vector of one series or a scalar can be sampled",
            excerpt(other.as_bytes())
        )),
    }
}

#[async_trait]
impl Source for PrometheusSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        let err = |m: String| SourceError::new(&self.name, m);
        let client = self.client.as_ref().map_err(|m| err(m.clone()))?;
        let endpoint = format!("{}/api/v1/query", self.base.trim_end_matches('/'));
        let url = reqwest::Url::parse_with_params(&endpoint, &[("query", self.query.as_str())])
            .map_err(|e| {
                err(format!(
                    "invalid Prometheus URL {}: {e}",
                    redact(&self.base)
                ))
            })?;
        let shown = redact(&endpoint);
        let (status, body) = get_bounded(client, url, self.timeout).await.map_err(err)?;
        let doc: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(d) => d,
            Err(_) if !status.is_success() => {
                return Err(err(format!(
                    "{shown} answered HTTP {status}: {}",
                    excerpt(&body)
                )));
            }
            Err(e) => return Err(err(format!("{shown}: the response is not JSON ({e})"))),
        };
        let value =
            prometheus_value(&doc, &self.query, &status.to_string(), &shown).map_err(err)?;
        Ok(vec![Sample::new(&self.name, now, value)])
    }
}

// ---------------------------------------------------------------------------------------------

/// One source per configured signal that has a `source` (others are fed by the host and skipped).
/// Commands run in `config.repo`; each source uses its signal's timeout.
pub fn build_sources(config: &Config) -> Vec<Box<dyn Source>> {
    // The commands these run must never see the config's secrets.
    scrub_env(config.secret_env.iter().cloned());
    let mut out: Vec<Box<dyn Source>> = Vec::new();
    for (name, sc) in &config.signals {
        let timeout = Duration::from_secs(sc.timeout.seconds().max(1));
        match &sc.source {
            None => {}
            Some(SourceKind::Command(cmd)) => {
                out.push(Box::new(CommandSource::new(
                    name,
                    cmd,
                    config.repo.clone(),
                    timeout,
                )));
            }
            Some(SourceKind::Http { url, field }) => {
                out.push(Box::new(HttpJsonSource::new(name, url, field, timeout)));
            }
            Some(SourceKind::Prometheus { url, query }) => {
                out.push(Box::new(PrometheusSource::new(name, url, query, timeout)));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary JSON, a few levels deep (what a compromised `/health` or Prometheus may send).
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
            prop_oneof![
                Just("NaN"),
                Just("+Inf"),
                Just("-1e400"),
                Just("1e308"),
                Just(" 4 "),
                Just("success"),
                Just("vector"),
                Just("scalar"),
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("status".to_string()),
                        Just("data".to_string()),
                        Just("resultType".to_string()),
                        Just("result".to_string()),
                        Just("value".to_string()),
                        Just("error".to_string()),
                        Just("errorType".to_string()),
                        "[a-z0-9_]{0,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
        // Fuzzing (issue 9): no source output can panic a parser, and what a parser accepts is
        // a finite number. Cases: PROPTEST_CASES (default 256); see SECURITY.md for a long run.
        #[test]
        fn fuzz_command_stdout(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(v) = parse_number(&bytes) {
                prop_assert!(v.is_finite());
            }
            prop_assert!(excerpt(&bytes).chars().count() <= EXCERPT_CHARS + 1);
        }

        #[test]
        fn fuzz_command_stdout_text(text in "[ \\t\\n0-9eE+.,_a-zA-Z-]{0,40}") {
            if let Ok(v) = parse_number(text.as_bytes()) {
                prop_assert!(v.is_finite());
            }
        }

        #[test]
        fn fuzz_http_json_field(doc in json(), field in "[a-z0-9_.]{0,24}") {
            if let Ok(v) = read_field(&doc, &field) {
                prop_assert!(v.is_finite());
            }
        }

        #[test]
        fn fuzz_prometheus_answers(doc in json(), q in ".{0,20}") {
            if let Ok(v) = prometheus_value(&doc, &q, "200 OK", "http://127.0.0.1/api/v1/query") {
                prop_assert!(v.is_finite());
            }
        }

        #[test]
        fn fuzz_prometheus_near_valid(
            status in prop_oneof![Just("success".to_string()), Just("error".to_string()), ".{0,8}"],
            rtype in prop_oneof![
                Just("vector".to_string()),
                Just("scalar".to_string()),
                Just("matrix".to_string()),
                ".{0,8}"
            ],
            value in json(),
            n in 0usize..3,
        ) {
            let series: Vec<serde_json::Value> =
                (0..n).map(|_| serde_json::json!({"metric": {}, "value": value.clone()})).collect();
            let result = if rtype == "scalar" { value.clone() } else { serde_json::Value::from(series) };
            let doc = serde_json::json!({"status": status, "data": {"resultType": rtype, "result": result}});
            if let Ok(v) = prometheus_value(&doc, "up", "200 OK", "p") {
                prop_assert!(v.is_finite());
            }
        }
    }

    #[test]
    fn prometheus_answers_are_read() {
        let one = serde_json::json!({"status": "success", "data": {"resultType": "vector",
            "result": [{"metric": {}, "value": [1.0, "4.5"]}]}});
        assert_eq!(prometheus_value(&one, "up", "200", "p").unwrap(), 4.5);
        let huge = "e".repeat(100_000);
        let bad = serde_json::json!({"status": huge, "errorType": huge, "error": huge});
        let e = prometheus_value(&bad, "up", "500", "p").unwrap_err();
        assert!(
            e.len() < 2000,
            "a hostile answer is excerpted: {} bytes",
            e.len()
        );
    }

    #[test]
    fn numbers_are_parsed_strictly() {
        assert_eq!(parse_number(b"42\n").unwrap(), 42.0);
        assert_eq!(parse_number(b"  -1.5e3 \n").unwrap(), -1500.0);
        for bad in [&b""[..], b"\n", b"1 2", b"nan", b"inf", b"12ms", b"\xff"] {
            assert!(parse_number(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fields_are_read_by_dotted_path() {
        let doc = serde_json::json!({"latency": {"p95_ms": 12.5}, "items": [{"v": " 4 "}], "s": "x", "n": null});
        assert_eq!(read_field(&doc, "latency.p95_ms").unwrap(), 12.5);
        assert_eq!(read_field(&doc, "items.0.v").unwrap(), 4.0);
        for (bad, says) in [
            ("latency.p99_ms", "no key `p99_ms`"),
            ("items.3.v", "no index 3"),
            ("items.x", "not an index"),
            ("s", "a string"),
            ("n", "null"),
            ("latency", "an object"),
            ("s.deeper", "cannot read"),
            ("a..b", "not a valid"),
        ] {
            let e = read_field(&doc, bad).unwrap_err();
            assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("http://u:secret@h:1/x"), "http://u:***@h:1/x");
        assert_eq!(redact("http://h/x"), "http://h/x");
    }
}
