//! `HttpJsonSource` and `PrometheusSource` against a real HTTP server on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use kaizen_adapters::source::{HttpJsonSource, PrometheusSource};
use kaizen_core::observe::Source;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TRICKY_QUERY: &str =
    r#"sum(rate(http_requests_total{job="api",code=~"5.."}[5m])) / 2 & more"#;

async fn prometheus(Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    let query = q.get("query").cloned().unwrap_or_default();
    let vector = |result: serde_json::Value| {
        Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
    };
    match query.as_str() {
        "up" => vector(json!([{"metric": {"job": "api"}, "value": [1_700_000_000.0, "1"]}])).into_response(),
        "none" => vector(json!([])).into_response(),
        "many" => vector(json!([
            {"metric": {"i": "a"}, "value": [1.0, "1"]},
            {"metric": {"i": "b"}, "value": [1.0, "2"]}
        ]))
        .into_response(),
        "nan" => vector(json!([{"metric": {}, "value": [1.0, "NaN"]}])).into_response(),
        "scalar(7)" => {
            Json(json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "7.25"]}})).into_response()
        }
        "range[5m]" => Json(json!({"status": "success", "data": {"resultType": "matrix", "result": []}})).into_response(),
        q if q == TRICKY_QUERY => vector(json!([{"metric": {}, "value": [1.0, "0.125"]}])).into_response(),
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 5: unexpected end"})),
        )
            .into_response(),
    }
}

async fn serve() -> String {
    let app = Router::new()
        .route(
            "/health",
            get(|| async {
                Json(json!({
                    "latency": {"p95_ms": 123.5},
                    "items": [{"v": "4.5"}, {"v": 6}],
                    "name": "svc",
                    "nothing": null,
                    "weird": "NaN"
                }))
            }),
        )
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database on fire") }),
        )
        .route("/text", get(|| async { "ok" }))
        .route(
            "/big",
            get(|| async { format!("{{\"pad\":\"{}\",\"v\":1}}", "x".repeat(2 * 1024 * 1024)) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Json(json!({"v": 1}))
            }),
        )
        .route("/api/v1/query", get(prometheus));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn http(url: &str, field: &str, timeout: Duration) -> Result<f64, String> {
    HttpJsonSource::new("latency_ms", url, field, timeout)
        .observe(Utc::now())
        .await
        .map(|s| s[0].value)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn http_json_fields_are_read() {
    let base = serve().await;
    let t = Duration::from_secs(5);
    let health = format!("{base}/health");
    let now = Utc::now();
    let s = HttpJsonSource::new("latency_ms", &health, "latency.p95_ms", t)
        .observe(now)
        .await
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].signal.as_str(), s[0].at, s[0].value),
        ("latency_ms", now, 123.5)
    );
    assert_eq!(http(&health, "items.0.v", t).await.unwrap(), 4.5);
    assert_eq!(http(&health, "items.1.v", t).await.unwrap(), 6.0);
}

#[tokio::test]
async fn http_json_errors_name_the_problem() {
    let base = serve().await;
    let t = Duration::from_secs(5);
    let health = format!("{base}/health");
    for (field, says) in [
        ("latency.p99_ms", "field `latency.p99_ms` not found"),
        ("items.5.v", "no index 5"),
        ("name", "field `name` is a string"),
        ("nothing", "field `nothing` is null"),
        ("weird", "not a finite number"),
        ("latency", "an object"),
    ] {
        let e = http(&health, field, t).await.unwrap_err();
        assert!(
            e.contains(says) && e.starts_with("source `latency_ms`"),
            "{field}: {e}"
        );
    }
    let e = http(&format!("{base}/boom"), "v", t).await.unwrap_err();
    assert!(e.contains("500") && e.contains("database on fire"), "{e}");
    let e = http(&format!("{base}/text"), "v", t).await.unwrap_err();
    assert!(e.contains("not JSON"), "{e}");
    let e = http(&format!("{base}/big"), "v", t).await.unwrap_err();
    assert!(e.contains("larger than 1 MiB"), "{e}");
    let started = Instant::now();
    let e = http(&format!("{base}/slow"), "v", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.contains("timed out"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing listens on port 1; passwords never reach messages.
    let e = http("http://user:hunter2@127.0.0.1:1/x", "v", t)
        .await
        .unwrap_err();
    assert!(!e.contains("hunter2") && e.contains("127.0.0.1:1"), "{e}");
    let e = http("not a url", "v", t).await.unwrap_err();
    assert!(e.contains("invalid URL"), "{e}");
}

async fn prom(base: &str, query: &str) -> Result<f64, String> {
    PrometheusSource::new("rps", base, query, Duration::from_secs(5))
        .observe(Utc::now())
        .await
        .map(|s| {
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].signal, "rps");
            s[0].value
        })
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn prometheus_instant_queries() {
    let base = serve().await;
    assert_eq!(prom(&base, "up").await.unwrap(), 1.0);
    assert_eq!(prom(&format!("{base}/"), "up").await.unwrap(), 1.0);
    assert_eq!(prom(&base, "scalar(7)").await.unwrap(), 7.25);
    // The query is URL-encoded: the server sees it exactly.
    assert_eq!(prom(&base, TRICKY_QUERY).await.unwrap(), 0.125);

    let e = prom(&base, "none").await.unwrap_err();
    assert!(e.contains("no series") && e.contains("exactly one"), "{e}");
    let e = prom(&base, "many").await.unwrap_err();
    assert!(e.contains("2 series") && e.contains("exactly one"), "{e}");
    let e = prom(&base, "nan").await.unwrap_err();
    assert!(e.contains("not a finite number"), "{e}");
    let e = prom(&base, "range[5m]").await.unwrap_err();
    assert!(e.contains("matrix"), "{e}");
    let e = prom(&base, "rate(").await.unwrap_err();
    assert!(e.contains("bad_data") && e.contains("parse error"), "{e}");
    let e = prom("http://127.0.0.1:1", "up").await.unwrap_err();
    assert!(e.contains("127.0.0.1:1"), "{e}");
}
