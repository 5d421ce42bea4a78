//! Notifiers against real endpoints: a webhook on 127.0.0.1 and a shell command.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use kaizen_adapters::notify::{CommandNotifier, WebhookNotifier};
use kaizen_core::intervention::InterventionId;
use kaizen_core::notify::{Notification, NotificationKind, Notifier};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

async fn hook(State(seen): State<Seen>, body: String) -> StatusCode {
    seen.lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap_or_default());
    StatusCode::NO_CONTENT
}

fn note(kind: NotificationKind) -> Notification {
    Notification {
        kind,
        intervention: Some(InterventionId(7)),
        text: "revert of abc refused: uncommitted changes".into(),
        at: "2026-05-01T10:00:00Z".parse().unwrap(),
    }
}

#[tokio::test]
async fn webhook_posts_json_and_reports_failures() {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/broken", post(|| async { StatusCode::BAD_GATEWAY }))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let n = WebhookNotifier::new(
        format!("http://{addr}/hook"),
        vec![NotificationKind::Escalation],
        Duration::from_secs(2),
    );
    assert!(n.wants(NotificationKind::Escalation));
    assert!(!n.wants(NotificationKind::Applied));
    n.notify(&note(NotificationKind::Escalation)).await.unwrap();
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["kind"], "escalation");
    assert_eq!(got[0]["intervention"], "K-000007");
    assert!(got[0]["text"].as_str().unwrap().contains("uncommitted"));

    let broken = WebhookNotifier::new(
        format!("http://{addr}/broken"),
        vec![NotificationKind::Escalation],
        Duration::from_secs(2),
    );
    let err = broken
        .notify(&note(NotificationKind::Escalation))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("502"), "{err}");
    let down = WebhookNotifier::new(
        "http://127.0.0.1:1/hook",
        vec![NotificationKind::Escalation],
        Duration::from_secs(2),
    );
    assert!(
        down.notify(&note(NotificationKind::Escalation))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn command_notifier_gets_the_notification_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got");
    let n = CommandNotifier::new(
        format!(
            "printf '%s|%s|%s' \"$KAIZEN_NOTIFY_KIND\" \"$KAIZEN_INTERVENTION\" \"$KAIZEN_TEXT\" > {}",
            out.display()
        ),
        dir.path(),
        vec![NotificationKind::Reverted],
        Duration::from_secs(5),
    );
    n.notify(&note(NotificationKind::Reverted)).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "reverted|K-000007|revert of abc refused: uncommitted changes"
    );
    let failing = CommandNotifier::new(
        "exit 4",
        dir.path(),
        vec![NotificationKind::Reverted],
        Duration::from_secs(5),
    );
    assert!(
        failing
            .notify(&note(NotificationKind::Reverted))
            .await
            .is_err()
    );
}
