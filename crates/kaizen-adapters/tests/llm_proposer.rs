//! The LLM proposer against a real HTTP server on 127.0.0.1 speaking chat-completions with
//! scripted replies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use chrono::{DateTime, Duration as CDuration, Utc};
use kaizen_adapters::llm::{
    ChatClient, ClientOptions, LlmError, LlmProposer, build_prompt, diagnose_with,
};
use kaizen_core::config::{LlmConfig, StructuredOutput};
use kaizen_core::lesson::{Lesson, LessonScope, LessonStatus};
use kaizen_core::propose::{ProposeContext, Proposer};
use kaizen_core::span::Span;
use kaizen_core::{Better, Sample, Signal};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------- scripted server ----------

#[derive(Clone, Default)]
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
    headers: Vec<(&'static str, String)>,
    chunked: bool,
}

fn ok(body: String) -> Reply {
    Reply {
        status: 200,
        body,
        ..Default::default()
    }
}

fn status(code: u16, body: &str) -> Reply {
    Reply {
        status: code,
        body: body.to_string(),
        ..Default::default()
    }
}

#[derive(Clone, Debug)]
struct Seen {
    auth: Option<String>,
    body: Value,
}

#[derive(Default)]
struct St {
    queue: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

struct Server {
    base_url: String,
    st: Arc<St>,
}

impl Server {
    async fn start(replies: Vec<Reply>) -> Server {
        let st = Arc::new(St {
            queue: Mutex::new(replies.into()),
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(handler))
            .with_state(st.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            base_url: format!("http://{addr}/v1"),
            st,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.st.seen.lock().unwrap().clone()
    }
}

async fn handler(State(st): State<Arc<St>>, headers: HeaderMap, body: String) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    st.seen.lock().unwrap().push(Seen {
        auth: auth.clone(),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    });
    let reply = st
        .queue
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| status(500, "script exhausted"));
    tokio::time::sleep(reply.delay).await;
    // `{auth}` in a scripted body echoes the Authorization header (a leaky server).
    let text = reply.body.replace("{auth}", auth.as_deref().unwrap_or(""));
    let body = if reply.chunked {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = text
            .into_bytes()
            .chunks(8192)
            .map(|c| Ok(c.to_vec()))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    } else {
        Body::from(text)
    };
    let mut resp = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        resp = resp.header(*k, v);
    }
    resp.header("content-type", "application/json")
        .body(body)
        .unwrap()
}

fn chat(content: &str) -> String {
    json!({
        "id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
    })
    .to_string()
}

fn tool_chat(arguments: &str) -> String {
    json!({
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "kaizen_candidates", "arguments": arguments}}]}}]
    })
    .to_string()
}

// ---------- fixtures ----------

fn now() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn config(base_url: &str, mode: StructuredOutput) -> LlmConfig {
    LlmConfig {
        base_url: base_url.to_string(),
        model: "test-model".into(),
        api_key_env: None,
        structured_output: mode,
        timeout: Span::from_secs(1),
        max_candidates: 3,
        max_prompt_tokens: 6000,
        may_change: vec!["config/**".into()],
        retries: 2,
        max_tokens: 512,
        temperature: 0.0,
        rewrite_lessons: false,
    }
}

fn opts() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_millis(200),
        retries: 2,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
        retry_after_cap: Duration::from_millis(100),
        max_response_bytes: 256 * 1024,
    }
}

fn repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("config")).unwrap();
    std::fs::create_dir_all(d.path().join(".git")).unwrap();
    std::fs::write(d.path().join("config/app.yaml"), "cache_mb: 128\n").unwrap();
    d
}

fn proposer(cfg: &LlmConfig, repo: &Path) -> LlmProposer {
    LlmProposer::with_options(
        cfg,
        repo.to_path_buf(),
        vec![".kaizen".into(), ".kaizen/**".into(), "kaizen.yaml".into()],
        opts(),
    )
    .unwrap()
}

fn lesson(id: &str, area: &str, signal: Option<&str>) -> Lesson {
    Lesson {
        id: id.into(),
        scope: LessonScope {
            area: area.into(),
            signal: signal.map(str::to_string),
            kind: None,
            file: None,
        },
        when: "latency is high under load".into(),
        prefer: "grow the cache in steps of 2x".into(),
        because: "misses dominate latency MARKER-LESSON-TEXT".into(),
        falsifiable: "latency_ms does not fall".into(),
        retired_when: "latency baseline leaves 100..300".into(),
        calibrated_for: Value::Null,
        created: now(),
        status: LessonStatus::Active,
        evidence: vec![],
        version: 1,
        retired_at: None,
        retired_reason: None,
    }
}

fn ctx(latency: f64) -> ProposeContext {
    let signals = vec![
        Signal {
            name: "latency_ms".into(),
            unit: "ms".into(),
            better: Better::Lower,
            alert_above: Some(200.0),
            alert_below: None,
        },
        Signal {
            name: "error_rate".into(),
            unit: "ratio".into(),
            better: Better::Lower,
            alert_above: Some(0.05),
            alert_below: None,
        },
    ];
    let mut recent = BTreeMap::new();
    let lat: Vec<Sample> = (0..30)
        .map(|i| {
            let v = if i == 29 { latency } else { 150.0 + i as f64 };
            Sample::new("latency_ms", now() - CDuration::minutes(29 - i), v)
        })
        .collect();
    recent.insert("latency_ms".to_string(), lat);
    recent.insert(
        "error_rate".to_string(),
        vec![Sample::new("error_rate", now(), 0.01)],
    );
    ProposeContext {
        now: now(),
        signals,
        recent,
        lessons: vec![],
        interventions: vec![],
        freezes: vec![],
        budget_left: 4,
    }
}

fn cand(file: &str, key: &str) -> Value {
    json!({
        "area": "cache",
        "title": "Grow the cache",
        "hypothesis": "Most requests miss the cache; a bigger cache cuts latency.",
        "change": [{"config_set": {"file": file, "key": key, "value": 256}}],
        "predict": {"signal": "latency_ms", "change": "-20%", "within": "30m"},
        "risk": "low",
        "confidence": 0.6,
        "rollback": "revert",
        "cites": [],
        "argues_against": []
    })
}

fn answer(cands: Vec<Value>) -> String {
    json!({ "candidates": cands }).to_string()
}

// ---------- tests ----------

#[tokio::test]
async fn good_proposal_becomes_a_candidate() {
    let server = Server::start(vec![ok(chat(&answer(vec![cand(
        "config/app.yaml",
        "cache_mb",
    )])))])
    .await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    assert_eq!(p.name(), "llm");
    let out = p.propose(&ctx(251.0)).await.unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(out.candidates.len(), 1);
    let c = &out.candidates[0];
    assert_eq!(c.area, "cache");
    assert_eq!(c.kind, "config_set");
    assert_eq!(c.origin.proposer, "llm");
    assert!(
        c.origin.trigger.contains("latency_ms"),
        "{}",
        c.origin.trigger
    );
    assert_eq!(c.prediction.to_string(), "latency_ms -20% within 30m");
    assert_eq!(c.rollback.as_deref(), Some("revert"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].auth, None,
        "no api_key_env → no Authorization header"
    );
    let body = &seen[0].body;
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["response_format"]["type"], "json_object");
    assert_eq!(
        body["response_format"]["schema"]["properties"]["candidates"]["maxItems"],
        3
    );
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("latency_ms = 251 ms"), "{user}");
    assert!(user.contains("config/**"), "{user}");
    assert!(
        !user.contains("- error_rate ="),
        "non-alerting signals are filtered out: {user}"
    );
}

#[tokio::test]
async fn nothing_alerting_means_no_call() {
    let server = Server::start(vec![]).await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let out = p.propose(&ctx(120.0)).await.unwrap();
    assert!(out.candidates.is_empty() && out.rejected.is_empty());
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn json_in_prose_and_fences_is_extracted() {
    let content = format!(
        "Sure! Based on the data {{not json}} here is my proposal:\n```json\n{}\n```\nHope this helps.",
        answer(vec![cand("config/app.yaml", "cache_mb")])
    );
    let server = Server::start(vec![ok(chat(&content))]).await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::Text),
        repo.path(),
    );
    let out = p.propose(&ctx(251.0)).await.unwrap();
    assert_eq!(out.candidates.len(), 1, "{:?}", out.rejected);
}

#[tokio::test]
async fn malformed_json_is_a_readable_error() {
    let server = Server::start(vec![ok(chat(
        "{\"candidates\": [{\"area\": \"cache\", \"title\": ",
    ))])
    .await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let e = p.propose(&ctx(251.0)).await.unwrap_err();
    assert_eq!(e.proposer, "llm");
    assert!(e.message.contains("no JSON object"), "{e}");
    assert!(e.message.contains("candidates"), "excerpt included: {e}");

    // Valid JSON of the wrong shape.
    let server = Server::start(vec![
        ok(chat("{\"answer\": 42}")),
        ok("not json at all".into()),
    ])
    .await;
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let e = p.propose(&ctx(251.0)).await.unwrap_err();
    assert!(e.message.contains("no `candidates` field"), "{e}");
    let e = p.propose(&ctx(251.0)).await.unwrap_err();
    assert!(e.message.contains("not a chat-completions response"), "{e}");
}

#[tokio::test]
async fn garbage_candidates_are_rejected_one_by_one() {
    let mut bad_signal = cand("config/app.yaml", "a");
    bad_signal["predict"]["signal"] = json!("cpu");
    let mut bad_change = cand("config/app.yaml", "b");
    bad_change["predict"]["change"] = json!("a lot");
    let mut wrong_way = cand("config/app.yaml", "c");
    wrong_way["predict"]["change"] = json!("+20%");
    let mut no_rollback = cand("config/app.yaml", "d");
    no_rollback["rollback"] = json!("");
    let mut bad_conf = cand("config/app.yaml", "e");
    bad_conf["confidence"] = json!(1.5);
    let mut long_title = cand("config/app.yaml", "f");
    long_title["title"] = json!("x".repeat(500));
    let mut bad_edit = cand("config/app.yaml", "g");
    bad_edit["change"] = json!([{"shell": {"cmd": "rm -rf /"}}]);
    let mut bad_risk = cand("config/app.yaml", "h");
    bad_risk["risk"] = json!("none");
    let good = cand("config/app.yaml", "cache_mb");
    let text = answer(vec![
        json!(42),
        bad_signal,
        bad_change,
        wrong_way,
        no_rollback,
        bad_conf,
        long_title,
        bad_edit,
        bad_risk,
        good,
    ]);
    let server = Server::start(vec![ok(chat(&text))]).await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let out = p.propose(&ctx(251.0)).await.unwrap();
    assert_eq!(out.candidates.len(), 1);
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons.len(), 9, "{reasons:#?}");
    for (i, needle) in [
        "not a JSON object",
        "unknown signal \"cpu\"",
        "predict.change",
        "change for the worse",
        "`rollback` is empty",
        "`confidence`",
        "`title` is longer than",
        "unknown edit kind `shell`",
        "unknown risk",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            reasons[i].contains(needle),
            "{i}: {} should contain {needle}",
            reasons[i]
        );
    }
    assert!(
        out.rejected
            .iter()
            .all(|r| r.excerpt.chars().count() <= 301)
    );
}

#[cfg(unix)]
#[tokio::test]
async fn dangerous_paths_are_rejected() {
    let outside = tempfile::tempdir().unwrap();
    let repo = repo();
    std::os::unix::fs::symlink(outside.path(), repo.path().join("config/escape")).unwrap();
    std::os::unix::fs::symlink(repo.path().join(".git"), repo.path().join("config/gitlink"))
        .unwrap();
    std::os::unix::fs::symlink(
        "/nonexistent/kaizen-test",
        repo.path().join("config/dangling.yaml"),
    )
    .unwrap();
    let cases = [
        (".git/config.yaml", "git's internals"),
        ("../outside/app.yaml", "leaves the repository"),
        (".kaizen/state.yaml", "blocked path `.kaizen/**`"),
        (
            "config/escape/app.yaml",
            "escapes the repository through symlink `config/escape`",
        ),
        (
            "config/gitlink/config.yaml",
            "resolves through a symlink to \".git/config.yaml\"",
        ),
        ("config/dangling.yaml", "whose target does not exist"),
        ("/etc/app.yaml", "is absolute"),
        ("config/secrets/db.yaml", "blocked path `**/secrets/**`"),
        ("config/.env.yaml", "blocked path `**/.env*`"),
        ("src/app.yaml", "outside llm.may_change"),
    ];
    let cands: Vec<Value> = cases.iter().map(|(f, _)| cand(f, "k")).collect();
    let server = Server::start(vec![ok(chat(&answer(cands)))]).await;
    // Allow-list wide open except `src/`: the blocked/escape checks must hold on their own.
    let mut cfg = config(&server.base_url, StructuredOutput::JsonObject);
    cfg.may_change = vec![
        "config/**".into(),
        ".git/**".into(),
        ".kaizen/**".into(),
        "*.yaml".into(),
    ];
    cfg.max_candidates = 10;
    let p = proposer(&cfg, repo.path());
    let out = p.propose(&ctx(251.0)).await.unwrap();
    assert!(out.candidates.is_empty(), "{:?}", out.candidates);
    assert_eq!(out.rejected.len(), cases.len());
    for (r, (file, needle)) in out.rejected.iter().zip(cases) {
        assert!(r.reason.contains(needle), "{file}: {}", r.reason);
        assert!(r.reason.contains(file), "{file}: {}", r.reason);
    }
    assert!(!outside.path().join("app.yaml").exists());
}

#[tokio::test]
async fn huge_response_is_an_error() {
    let huge = chat(&"x".repeat(300 * 1024));
    let mut chunked = ok(huge.clone());
    chunked.chunked = true;
    let server = Server::start(vec![ok(huge), chunked]).await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    for _ in 0..2 {
        let e = p.propose(&ctx(251.0)).await.unwrap_err();
        assert!(e.message.contains("response too large"), "{e}");
    }
    assert_eq!(server.seen().len(), 2, "no retry on a too-large answer");
}

#[tokio::test]
async fn relevant_lessons_must_be_cited_or_argued_against() {
    let mut ignores = cand("config/app.yaml", "cache_mb");
    ignores["title"] = json!("ignores");
    let mut argues = cand("config/app.yaml", "cache_ttl");
    argues["title"] = json!("argues");
    argues["argues_against"] = json!([{"lesson": "L-cache-steps", "why": "the miss rate is flat; the working set is 4x the cache, steps of 2x are too slow"}]);
    let mut cites = cand("config/app.yaml", "cache_policy");
    cites["title"] = json!("cites");
    cites["cites"] = json!(["L-cache-steps"]);
    let mut thin = cand("config/app.yaml", "cache_shards");
    thin["title"] = json!("thin");
    thin["argues_against"] = json!([{"lesson": "L-cache-steps", "why": "no"}]);
    let mut unknown = cand("config/app.yaml", "cache_x");
    unknown["title"] = json!("unknown");
    unknown["cites"] = json!(["L-cache-steps", "L-made-up"]);
    let text = answer(vec![ignores, argues, cites, thin, unknown]);
    let server = Server::start(vec![ok(chat(&text))]).await;
    let repo = repo();
    let mut cfg = config(&server.base_url, StructuredOutput::JsonObject);
    cfg.max_candidates = 5;
    let p = proposer(&cfg, repo.path());
    let mut c = ctx(251.0);
    c.lessons = vec![
        lesson("L-cache-steps", "cache", Some("latency_ms")),
        lesson("L-db-pool", "db", Some("db_wait_ms")),
    ];
    let out = p.propose(&c).await.unwrap();
    let titles: Vec<&str> = out.candidates.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(titles, ["argues", "cites"]);
    assert_eq!(
        out.candidates[0].origin.argues_against[0].lesson,
        "L-cache-steps"
    );
    assert!(
        out.candidates[0].origin.argues_against[0]
            .why
            .contains("working set")
    );
    assert_eq!(out.candidates[1].origin.cites, ["L-cache-steps"]);
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    assert!(
        reasons[0].contains("\"ignores\"")
            && reasons[0].contains("ignores relevant active lesson \"L-cache-steps\"")
    );
    assert!(reasons[1].contains("too thin"));
    assert!(reasons[2].contains("unknown or inactive lesson \"L-made-up\""));
    // The prompt showed the relevant lesson.
    let user = server.seen()[0].body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(user.contains("L-cache-steps"));
}

#[tokio::test]
async fn finish_reason_length_is_a_failure() {
    let body = json!({"choices": [{"message": {"role": "assistant", "content": "{\"candidates\": [{\"area\": \"cache\""}, "finish_reason": "length"}]})
        .to_string();
    let server = Server::start(vec![ok(body)]).await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let e = p.propose(&ctx(251.0)).await.unwrap_err();
    assert!(e.message.contains("token limit"), "{e}");
}

#[tokio::test]
async fn server_error_then_success_retries() {
    let server = Server::start(vec![
        status(500, "{\"error\": \"loading model\"}"),
        status(503, "busy"),
        ok(chat(&answer(vec![cand("config/app.yaml", "cache_mb")]))),
    ])
    .await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let out = p.propose(&ctx(251.0)).await.unwrap();
    assert_eq!(out.candidates.len(), 1);
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_bounded_retries() {
    let server = Server::start(vec![
        status(500, "a"),
        status(502, "b"),
        status(500, "c"),
        status(500, "d"),
    ])
    .await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let e = p.propose(&ctx(251.0)).await.unwrap_err();
    assert!(e.message.contains("HTTP 500 (3 attempt(s))"), "{e}");
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn client_error_is_not_retried() {
    let server = Server::start(vec![status(
        400,
        "{\"error\": {\"message\": \"json_schema not supported\"}}",
    )])
    .await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonSchema),
        repo.path(),
    );
    let e = p.propose(&ctx(251.0)).await.unwrap_err();
    assert!(e.message.contains("HTTP 400 (1 attempt(s))"), "{e}");
    assert!(e.message.contains("json_schema not supported"), "{e}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn rate_limit_honours_capped_retry_after() {
    let mut limited = status(429, "slow down");
    limited.headers = vec![("retry-after", "30".into())];
    let server = Server::start(vec![
        limited,
        ok(chat(&answer(vec![cand("config/app.yaml", "cache_mb")]))),
    ])
    .await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let t = Instant::now();
    let out = p.propose(&ctx(251.0)).await.unwrap();
    assert_eq!(out.candidates.len(), 1);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "Retry-After 30 s capped at 100 ms"
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn timeout_fails_after_bounded_retries() {
    let slow = Reply {
        delay: Duration::from_secs(2),
        ..ok(chat(&answer(vec![])))
    };
    let server = Server::start(vec![slow.clone(), slow.clone(), slow.clone(), slow]).await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let t = Instant::now();
    let e = p.propose(&ctx(251.0)).await.unwrap_err();
    assert!(
        e.message
            .contains("did not answer within 200ms (3 attempt(s))"),
        "{e}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn server_down_is_a_readable_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let repo = repo();
    let p = proposer(
        &config(&format!("http://{addr}/v1"), StructuredOutput::JsonObject),
        repo.path(),
    );
    let e = p.propose(&ctx(251.0)).await.unwrap_err();
    assert!(e.message.contains("cannot reach"), "{e}");
    assert!(e.message.contains("3 attempt(s)"), "{e}");
}

#[tokio::test]
async fn every_structured_output_mode_sends_its_shape() {
    let good = answer(vec![cand("config/app.yaml", "cache_mb")]);
    for mode in [
        StructuredOutput::JsonSchema,
        StructuredOutput::JsonObject,
        StructuredOutput::ToolCall,
        StructuredOutput::Text,
    ] {
        let reply = if mode == StructuredOutput::ToolCall {
            tool_chat(&good)
        } else {
            chat(&good)
        };
        let server = Server::start(vec![ok(reply)]).await;
        let repo = repo();
        let p = proposer(&config(&server.base_url, mode), repo.path());
        let out = p.propose(&ctx(251.0)).await.unwrap();
        assert_eq!(out.candidates.len(), 1, "{mode:?}: {:?}", out.rejected);
        let body = &server.seen()[0].body;
        let rf = &body["response_format"];
        match mode {
            StructuredOutput::JsonSchema => {
                assert_eq!(rf["type"], "json_schema");
                assert_eq!(rf["json_schema"]["name"], "kaizen_candidates");
                assert_eq!(rf["json_schema"]["strict"], true);
                assert_eq!(
                    rf["json_schema"]["schema"]["required"],
                    json!(["candidates"])
                );
                assert!(body.get("tools").is_none());
            }
            StructuredOutput::JsonObject => {
                assert_eq!(rf["type"], "json_object");
                assert_eq!(rf["schema"]["type"], "object");
                assert!(body.get("tools").is_none());
            }
            StructuredOutput::ToolCall => {
                assert!(body.get("response_format").is_none());
                assert_eq!(body["tools"][0]["type"], "function");
                assert_eq!(body["tools"][0]["function"]["name"], "kaizen_candidates");
                assert_eq!(body["tools"][0]["function"]["parameters"]["type"], "object");
                assert_eq!(body["tool_choice"]["function"]["name"], "kaizen_candidates");
            }
            StructuredOutput::Text => {
                assert!(body.get("response_format").is_none());
                assert!(body.get("tools").is_none());
                let user = body["messages"][1]["content"].as_str().unwrap();
                assert!(
                    user.contains("\"maxLength\""),
                    "the schema is in the prompt"
                );
            }
        }
    }
}

/// A writer into a shared buffer, for capturing tracing output.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn api_key_never_leaks() {
    const VAR: &str = "KAIZEN_TEST_LLM_KEY_NEVER_LEAKS";
    const KEY: &str = "sk-test-7f3a9c1e5b2d4f6a8c0e";
    // SAFETY: a variable only this test reads; set before any request is made.
    unsafe { std::env::set_var(VAR, KEY) };
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A leaky server echoes the Authorization header: in an error body, then in the answer.
    let echo_answer = {
        let mut c = cand("config/app.yaml", "cache_mb");
        c["hypothesis"] = json!("the header was {auth}");
        chat(&answer(vec![c]))
    };
    let server = Server::start(vec![
        status(503, "upstream said {auth}"),
        status(401, "bad credentials: {auth}"),
        ok(echo_answer),
        ok(chat("no json, but {auth}")),
    ])
    .await;
    let repo = repo();
    let mut cfg = config(&server.base_url, StructuredOutput::JsonObject);
    cfg.api_key_env = Some(VAR.into());
    let p = proposer(&cfg, repo.path());
    let e1 = p.propose(&ctx(251.0)).await.unwrap_err();
    let out = p.propose(&ctx(251.0)).await.unwrap();
    let e2 = p.propose(&ctx(251.0)).await.unwrap_err();
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|s| s.auth.as_deref() == Some(&format!("Bearer {KEY}") as &str))
    );
    assert!(
        seen.iter().all(|s| !s.body.to_string().contains(KEY)),
        "not in the prompt"
    );
    assert!(e1.message.contains("[redacted]"), "{e1}");
    for text in [
        e1.to_string(),
        e2.to_string(),
        format!("{e1:?}"),
        format!("{p:?}"),
    ] {
        assert!(!text.contains(KEY), "{text}");
    }
    assert!(out.candidates[0].hypothesis.contains("[redacted]"));
    assert!(!format!("{out:?}").contains(KEY));
    drop(_guard);
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("proposer=llm"), "logs were captured: {logs}");
    assert!(!logs.contains(KEY), "{logs}");

    // An empty variable sends no header at all.
    const EMPTY: &str = "KAIZEN_TEST_LLM_KEY_EMPTY";
    // SAFETY: as above.
    unsafe { std::env::set_var(EMPTY, "") };
    let server = Server::start(vec![ok(chat(&answer(vec![])))]).await;
    let mut cfg = config(&server.base_url, StructuredOutput::JsonObject);
    cfg.api_key_env = Some(EMPTY.into());
    proposer(&cfg, repo.path())
        .propose(&ctx(251.0))
        .await
        .unwrap();
    assert_eq!(server.seen()[0].auth, None);
}

#[test]
fn prompt_is_deterministic_and_bounded() {
    let mut c = ctx(251.0);
    c.lessons = (0..60)
        .map(|i| {
            lesson(
                &format!("L-{i:03}"),
                if i % 2 == 0 { "cache" } else { "db" },
                None,
            )
        })
        .collect();
    c.lessons
        .push(lesson("L-latency", "cache", Some("latency_ms")));
    let mut cfg = config("http://127.0.0.1:9/v1", StructuredOutput::JsonObject);
    let a = build_prompt(&c, &cfg);
    let b = build_prompt(&c, &cfg);
    assert_eq!(a, b);
    assert!(a.omitted.is_empty(), "{:?}", a.omitted);
    cfg.max_prompt_tokens = 2000;
    let small = build_prompt(&c, &cfg);
    assert!(!small.omitted.is_empty());
    assert!(small.approx_tokens() <= 2000, "{}", small.approx_tokens());
    assert!(
        small.user.contains("Omitted to fit the prompt size"),
        "the prompt says so"
    );
    assert!(
        small.user.contains("L-latency"),
        "the most relevant lesson is kept"
    );
    assert!(small.user.contains("latency_ms = 251 ms"));
    assert!(small.user.contains("\"candidates\""), "the schema is kept");
    assert!(small.user.contains("last hour: n=30"), "{}", small.user);
}

#[tokio::test]
async fn diagnose_ranks_hypotheses_and_sends_only_alerts_and_decisions() {
    let reply = json!({"hypotheses": [
        {"rank": 2, "cause": "GC pauses", "evidence": "p99 spikes every 5 minutes", "check_next": "GC logs", "confidence": 0.3},
        {"rank": 1, "cause": "cache too small", "evidence": "latency rose with traffic", "check_next": "cache hit ratio", "confidence": 0.5},
        {"rank": 9, "cause": "", "evidence": "", "check_next": "", "confidence": 2}
    ]})
    .to_string();
    let server = Server::start(vec![ok(chat(&reply))]).await;
    let cfg = config(&server.base_url, StructuredOutput::JsonSchema);
    let client = ChatClient::with_options(&cfg, opts()).unwrap();
    let mut c = ctx(251.0);
    c.lessons = vec![lesson("L-cache-steps", "cache", Some("latency_ms"))];
    let d = diagnose_with(&client, 6000, &c).await.unwrap();
    assert_eq!(d.signals, ["latency_ms"]);
    assert_eq!(d.hypotheses.len(), 2);
    assert_eq!(d.hypotheses[0].cause, "cache too small");
    assert_eq!(d.hypotheses[0].rank, 1);
    assert_eq!(d.hypotheses[1].rank, 2);
    assert_eq!(d.rejected.len(), 1);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["hypotheses"][0]["check_next"], "cache hit ratio");
    assert!(d.to_string().contains("1. cache too small"));
    let body = &server.seen()[0].body;
    assert_eq!(
        body["response_format"]["json_schema"]["name"],
        "kaizen_diagnosis"
    );
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("latency_ms"));
    assert!(!user.contains("MARKER-LESSON-TEXT"), "lessons are not sent");
    assert!(!user.contains("config/**"), "the allow-list is not sent");

    // Nothing alerting: no call.
    let d = diagnose_with(&client, 6000, &ctx(100.0)).await.unwrap();
    assert!(d.hypotheses.is_empty() && d.note.is_some());
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn bad_config_is_refused() {
    let mut cfg = config("ftp://127.0.0.1/v1", StructuredOutput::JsonObject);
    let e = LlmProposer::new(&cfg, ".".into(), vec![]).unwrap_err();
    assert!(matches!(e, LlmError::Config { .. }), "{e}");
    cfg.base_url = "http://user:sk-secret@127.0.0.1/v1".into();
    let e = LlmProposer::new(&cfg, ".".into(), vec![]).unwrap_err();
    assert!(!e.to_string().contains("sk-secret"), "{e}");
    cfg.base_url = "http://127.0.0.1/v1".into();
    cfg.may_change = vec!["[".into()];
    assert!(LlmProposer::new(&cfg, ".".into(), vec![]).is_err());
    cfg.may_change = vec![];
    assert!(LlmProposer::new(&cfg, ".".into(), vec![]).is_err());
}

#[tokio::test]
async fn model_is_not_asked_when_the_budget_is_used_up() {
    let server = Server::start(vec![ok(chat(&answer(vec![cand(
        "config/app.yaml",
        "cache_mb",
    )])))])
    .await;
    let repo = repo();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    );
    let mut c = ctx(251.0);
    c.budget_left = 0;
    let out = p.propose(&c).await.unwrap();
    assert!(out.candidates.is_empty() && out.rejected.is_empty());
    assert!(server.seen().is_empty(), "no request was sent");
}

// ---------- with declared tunables ----------

fn envelope() -> Arc<kaizen_core::tunables::Envelope> {
    let tunables = json!({
        "cache_mb": {"file": "config/app.yaml", "type": "int", "min": 16, "max": 1024, "max_step": "2x", "area": "memory", "risk": "medium"},
        "policy": {"file": "config/app.yaml", "key": "cache.policy", "type": "enum", "allowed": ["lru", "lfu"]}
    });
    let env = kaizen_core::tunables::load(
        Some(&tunables),
        &[],
        "",
        Path::new("kaizen.yaml"),
        Path::new("."),
    )
    .unwrap()
    .unwrap();
    Arc::new(env)
}

fn knob_cand(knob: &str, value: Value) -> Value {
    let mut c = cand("config/app.yaml", "cache_mb");
    c["change"] = json!([{"knob": knob, "value": value}]);
    c
}

#[tokio::test]
async fn with_tunables_the_schema_lists_the_knobs_and_the_guard_refuses_what_it_ignores() {
    use kaizen_core::guard::{Decision, GuardContext, GuardPolicy, LedgerView};
    // The model ignores the schema (max 256 this time) and answers 4096; a second candidate
    // uses a raw config_set, which the knob-only validator rejects.
    let server = Server::start(vec![ok(chat(&answer(vec![
        knob_cand("cache_mb", json!(4096)),
        cand("config/app.yaml", "workers"),
    ])))])
    .await;
    let repo = repo();
    let env = envelope();
    let p = proposer(
        &config(&server.base_url, StructuredOutput::JsonObject),
        repo.path(),
    )
    .with_envelope(Some(env.clone()));
    let out = p.propose(&ctx(251.0)).await.unwrap();

    let body = &server.seen()[0].body;
    let schema = &body["response_format"]["schema"];
    let items = &schema["properties"]["candidates"]["items"]["properties"]["change"]["items"];
    let knobs: Vec<&Value> = items["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["properties"]["knob"]["enum"][0])
        .collect();
    assert_eq!(knobs, [&json!("cache_mb"), &json!("policy")], "{items}");
    let cache = &items["anyOf"][0]["properties"]["value"];
    assert_eq!(cache["type"], "integer");
    assert_eq!(
        (cache["minimum"].clone(), cache["maximum"].clone()),
        (json!(64), json!(256)),
        "bounds ∩ one 2x step from 128"
    );
    assert_eq!(
        items["anyOf"][1]["properties"]["value"]["enum"],
        json!(["lru", "lfu"])
    );
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains(
            "- cache_mb = 128 (int 16..=1024, max step 2x; this time 64..=256; area memory; risk at least medium)"
        ),
        "{user}"
    );
    assert!(
        user.contains("- policy = unset (enum one of [lru, lfu])"),
        "{user}"
    );

    assert_eq!(out.rejected.len(), 1, "{:?}", out.rejected);
    assert!(
        out.rejected[0].reason.contains("an edit names a knob"),
        "{:?}",
        out.rejected
    );
    assert_eq!(out.candidates.len(), 1);
    let c = &out.candidates[0];
    assert_eq!(
        c.change[0].to_string(),
        "set cache_mb = 4096 in config/app.yaml"
    );
    // The knob's declared area and risk replace the model's claim (\"cache\", low).
    assert_eq!(
        (c.area.as_str(), c.risk.to_string()),
        ("memory", "medium".to_string())
    );
    // The envelope guard refuses it, naming the knob, the bound and the value.
    let view = LedgerView::default();
    let policy = GuardPolicy::default();
    let gctx = GuardContext {
        view: &view,
        policy: &policy,
        now: now(),
        repo_root: repo.path(),
    };
    let v = kaizen_core::guard::chain_for(Some(&env))
        .iter()
        .find(|g| g.name() == "envelope")
        .unwrap()
        .check(c, &gctx)
        .unwrap();
    assert_eq!(v.decision, Decision::Block);
    assert_eq!(v.reason, "knob `cache_mb`: 4096 is above max 1024");
}
