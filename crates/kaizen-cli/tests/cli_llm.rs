//! The LLM proposer and `kaizen diagnose` through the binary, against a real OpenAI-compatible
//! chat-completions server on 127.0.0.1 with scripted answers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use std::sync::{Arc, Mutex};

const SECRET: &str = "sk-test-DO-NOT-LEAK-4242";

#[derive(Clone, Default)]
struct Seen {
    answers: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

async fn chat(State(seen): State<Seen>, headers: HeaderMap, body: String) -> String {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    seen.requests.lock().expect("lock").push((auth, body));
    let content = {
        let mut a = seen.answers.lock().expect("lock");
        if a.is_empty() {
            "{\"candidates\": []}".to_string()
        } else {
            a.remove(0)
        }
    };
    serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]
    })
    .to_string()
}

/// Starts the server on a background thread; returns its base URL and what it saw.
fn server(answers: Vec<String>) -> (String, Seen) {
    let seen = Seen::default();
    *seen.answers.lock().expect("lock") = answers;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let state = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = Router::new()
                .route("/v1/chat/completions", post(chat))
                .with_state(state);
            axum::serve(listener, app).await.expect("serve");
        });
    });
    (format!("http://{addr}/v1"), seen)
}

fn llm_section(base: &str) -> String {
    format!(
        "llm:\n  base_url: {base}\n  model: test-model\n  api_key_env: KAIZEN_LLM_API_KEY\n  structured_output: json_object\n  timeout: 5s\n  max_candidates: 3\n  max_prompt_tokens: 6000\n  may_change: [\"config/**\"]\n"
    )
}

fn good_candidate(file: &str) -> String {
    serde_json::json!({"candidates": [{
        "area": "workers",
        "title": "raise worker count to absorb the queue",
        "hypothesis": "latency is queueing delay: 4 workers saturate at current load",
        "change": [{"config_set": {"file": file, "key": "workers", "value": 8}}],
        "predict": {"signal": "latency_ms", "change": "-25%", "within": "30m"},
        "risk": "low",
        "confidence": 0.6,
        "rollback": "revert",
        "cites": [],
        "argues_against": []
    }]})
    .to_string()
}

fn run(h: &Harness, minutes: i64, args: &[&str]) -> std::process::Output {
    let now = h.at(minutes).to_rfc3339();
    std::process::Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(args)
        .args(["--now", &now, "-vv"])
        .current_dir(&h.repo)
        .env("KAIZEN_LLM_API_KEY", SECRET)
        .output()
        .expect("runs")
}

#[test]
fn llm_candidate_is_guarded_and_applied_and_the_key_never_leaks() {
    let answer = format!(
        "Here is my proposal:\n```json\n{}\n```",
        good_candidate("config/app.yaml")
    );
    let (base, seen) = server(vec![answer]);
    let h = Harness::new("", &llm_section(&base));
    h.observe_range(-25, 10, |_| 250.0);
    h.set_metric(10, 250.0);
    let out = run(&h, 10, &["cycle"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let list = h.interventions(10);
    assert_eq!(list.len(), 1, "{stdout}");
    assert_eq!(list[0]["status"], "applied", "{}", list[0]);
    assert_eq!(list[0]["origin"], "llm");
    assert!(h.file("config/app.yaml").contains("workers: 8"));
    let msg = git_text(&h.repo, &["log", "-1", "--format=%B"]);
    assert!(msg.contains("Kaizen-Origin: llm"), "{msg}");

    // The key went only into the Authorization header.
    let requests = seen.requests.lock().expect("lock").clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, format!("Bearer {SECRET}"));
    assert!(
        !requests[0].1.contains(SECRET),
        "prompt must not contain the key"
    );
    assert!(
        requests[0].1.contains("latency_ms"),
        "the prompt names the alerting signal"
    );
    // Nowhere in logs, output, the ledger or the repo.
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    let ledger = std::fs::read(h.repo.join(".kaizen/ledger.sqlite")).expect("ledger");
    let wal = std::fs::read(h.repo.join(".kaizen/ledger.sqlite-wal")).unwrap_or_default();
    for bytes in [&ledger, &wal] {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "key found in the ledger"
        );
    }
    let show = h.ok(11, &["show", "K-000001"]);
    assert!(!show.contains(SECRET));
}

#[test]
fn unsafe_llm_output_is_recorded_and_never_applied() {
    let answers = vec![
        good_candidate(".git/config"),
        "this is not json at all".to_string(),
        good_candidate("kaizen.yaml"),
    ];
    let (base, _seen) = server(answers);
    let h = Harness::new("", &llm_section(&base));
    h.observe_range(-5, 10, |_| 250.0);
    for minute in [10, 11, 12] {
        h.set_metric(minute, 250.0);
        let out = run(&h, minute, &["cycle"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nothing became an intervention; nothing was committed.
    assert!(h.interventions(13).is_empty());
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
    // Each refusal is recorded with a reason a user can read.
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&h.ok(13, &["events", "--json", "--since", "1h"]))
            .expect("events json");
    let rejected: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["kind"] == "proposal_rejected")
        .collect();
    assert!(
        rejected
            .iter()
            .any(|e| e["detail"].as_str().unwrap_or_default().contains(".git")),
        "{events:?}"
    );
    assert!(
        rejected.iter().any(|e| e["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("kaizen.yaml")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["kind"] == "proposer_error"),
        "garbage output is a recorded proposer failure: {events:?}"
    );
}

#[test]
fn diagnose_prints_ranked_hypotheses_and_records_them() {
    let answer = serde_json::json!({"hypotheses": [
        {"rank": 1, "cause": "cache too small for the working set", "evidence": "latency_ms 250 vs alert 200", "check_next": "cache hit ratio", "confidence": 0.5},
        {"rank": 2, "cause": "downstream database slow", "evidence": "none yet", "check_next": "db p95", "confidence": 0.2}
    ]})
    .to_string();
    let (base, seen) = server(vec![answer]);
    let h = Harness::new("", &llm_section(&base));
    h.observe_range(-5, 10, |_| 250.0);
    let out = run(&h, 10, &["diagnose"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cache too small"), "{stdout}");
    assert_eq!(seen.requests.lock().expect("lock").len(), 1);
    // A diagnosis is not an action.
    assert!(h.interventions(10).is_empty());
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
}

#[test]
fn learn_with_llm_rewords_prose_but_never_the_facts() {
    let answers = vec![
        // The proposer's turn (latency alerting at +10m): nothing to add.
        "{\"candidates\": []}".to_string(),
        // The rewrite of the new lesson; it also tries to smuggle in a different `prefer`.
        serde_json::json!({"because": "Reworded: a bigger cache cut latency from about 250 ms to 150 ms.", "retired_when": "latency_ms median_24h outside [125, 500]", "prefer": "delete the database"}).to_string(),
        // Second run: a clean rewrite.
        serde_json::json!({"because": "Reworded: a bigger cache cut latency from about 250 ms to 150 ms.", "retired_when": "latency_ms median_24h outside [125, 500]"}).to_string(),
    ];
    let (base, seen) = server(answers);
    let h = Harness::new(RULE_GROW_CACHE, &llm_section(&base));
    h.use_simple_validator();
    let iv = run_round(&h, 0, 150.0);
    assert_eq!(iv["status"], "validated", "{iv}");

    // The smuggled field makes the whole rewrite invalid: the distiller's wording is kept.
    let out = run(&h, 60, &["learn", "--llm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kept the distiller's wording"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lesson_file = std::fs::read_dir(h.repo.join("lessons"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let first = std::fs::read_to_string(&lesson_file).unwrap();
    assert!(
        !first.contains("delete the database") && !first.contains("Reworded"),
        "{first}"
    );
    assert_eq!(seen.requests.lock().unwrap().len(), 2);

    // New evidence would be needed for another lesson change; force one by removing the lesson
    // file in a commit so the distiller recreates it, this time with a clean rewrite.
    git(&h.repo, &["rm", "-q", lesson_file.to_str().unwrap()]);
    git(&h.repo, &["commit", "-q", "-m", "drop lesson"]);
    let out = run(&h, 61, &["learn", "--llm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = std::fs::read_to_string(&lesson_file).unwrap();
    assert!(second.contains("Reworded: a bigger cache"), "{second}");
    assert!(second.contains("K-000001"), "evidence kept: {second}");
    assert!(!second.contains("delete the database"));
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
}
