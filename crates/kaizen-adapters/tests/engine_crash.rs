//! Crash safety: a kill at any point between the ledger and git leaves them consistent after
//! reconciliation — nothing applied twice, nothing forgotten. Real git repo, real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use kaizen_adapters::git::GitApplier;
use kaizen_core::apply::Applier;
use kaizen_core::clock::ManualClock;
use kaizen_core::config::Config;
use kaizen_core::engine::{CycleReport, Engine, EngineSettings};
use kaizen_core::intervention::{Candidate, Status};
use kaizen_core::ledger::{Ledger, Pending};
use kaizen_core::validate::SimpleValidator;
use std::path::Path;
use std::sync::Arc;

mod support;
use support::{cache_candidate, commits, git, repo};

fn candidate() -> Candidate {
    cache_candidate("rules")
}

fn settings(root: &Path) -> EngineSettings {
    let config = Config::parse(
        "signals:\n  latency_ms:\n    unit: ms\n    better: lower\n",
        &root.join("kaizen.yaml"),
    )
    .expect("config");
    EngineSettings::from_config(&config)
}

fn engine(root: &Path, clock: &ManualClock) -> Engine {
    Engine::builder(settings(root))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::open(&root.join(".kaizen/ledger.sqlite")).expect("ledger"))
        .applier(Box::new(GitApplier::open(root, None).expect("repo")))
        .validator(Box::new(SimpleValidator::default()))
        .build()
        .expect("engine")
}

#[test]
fn crash_after_commit_before_ledger_update_is_reconciled_once() {
    let dir = repo();
    let root = dir.path();
    let clock = ManualClock::at("2026-05-01T10:00:00Z".parse().expect("time"));
    // The engine's apply sequence, killed right after the commit: row written, pending set,
    // commit made — and the process dies before the ledger learns of it.
    let id = {
        let mut ledger = Ledger::open(&root.join(".kaizen/ledger.sqlite")).expect("ledger");
        let id = ledger
            .insert_proposed(&candidate(), clock.now_for_test(), "rule fired")
            .expect("insert");
        ledger
            .set_pending(id, Some(Pending::Apply))
            .expect("pending");
        GitApplier::open(root, None)
            .expect("repo")
            .apply(id, &candidate())
            .expect("commit");
        id
    };
    assert_eq!(commits(root), 2);

    let mut e = engine(root, &clock);
    let mut report = CycleReport::default();
    e.reconcile(&mut report).expect("reconcile");
    let iv = e.ledger().get(id).expect("row");
    assert_eq!(iv.status, Status::Applied);
    assert_eq!(
        iv.commit.as_deref(),
        Some(git(root, &["rev-parse", "HEAD"]).trim())
    );
    assert!(e.ledger().pending().expect("pending").is_empty());
    // Nothing applied twice: a second reconciliation changes nothing.
    let mut again = CycleReport::default();
    e.reconcile(&mut again).expect("reconcile");
    assert!(again.lines.is_empty(), "{:?}", again.lines);
    assert_eq!(commits(root), 2);
    assert_eq!(git(root, &["status", "--porcelain"]), "");
    git(root, &["fsck", "--strict"]);
}

#[test]
fn crash_before_commit_is_recorded_as_not_applied() {
    let dir = repo();
    let root = dir.path();
    let clock = ManualClock::at("2026-05-01T10:00:00Z".parse().expect("time"));
    let id = {
        let mut ledger = Ledger::open(&root.join(".kaizen/ledger.sqlite")).expect("ledger");
        let id = ledger
            .insert_proposed(&candidate(), clock.now_for_test(), "rule fired")
            .expect("insert");
        ledger
            .set_pending(id, Some(Pending::Apply))
            .expect("pending");
        id
    };
    let mut e = engine(root, &clock);
    let mut report = CycleReport::default();
    e.reconcile(&mut report).expect("reconcile");
    let iv = e.ledger().get(id).expect("row");
    assert_eq!(iv.status, Status::Blocked);
    assert!(iv.reason.contains("interrupted"), "{}", iv.reason);
    assert_eq!(commits(root), 1);
    assert_eq!(
        std::fs::read_to_string(root.join("config/app.yaml")).expect("read"),
        "cache_mb: 128\n"
    );
}

#[test]
fn crash_after_revert_commit_is_reconciled() {
    let dir = repo();
    let root = dir.path();
    let clock = ManualClock::at("2026-05-01T10:00:00Z".parse().expect("time"));
    let (id, sha) = {
        let mut ledger = Ledger::open(&root.join(".kaizen/ledger.sqlite")).expect("ledger");
        let applier = GitApplier::open(root, None).expect("repo");
        let now = clock.now_for_test();
        let id = ledger
            .insert_proposed(&candidate(), now, "rule fired")
            .expect("insert");
        let sha = applier.apply(id, &candidate()).expect("commit").sha;
        ledger
            .mark_applied(
                id,
                &sha,
                now,
                now,
                kaizen_core::event::Stage::Apply,
                "committed",
            )
            .expect("applied");
        // Revert: pending set, revert commit made, then the kill.
        ledger
            .set_pending(id, Some(Pending::Revert))
            .expect("pending");
        applier.revert(id, &sha, "no effect").expect("revert");
        (id, sha)
    };
    let mut e = engine(root, &clock);
    let mut report = CycleReport::default();
    e.reconcile(&mut report).expect("reconcile");
    let iv = e.ledger().get(id).expect("row");
    assert_eq!(iv.status, Status::Reverted);
    let head = git(root, &["rev-parse", "HEAD"]);
    assert_eq!(iv.revert_commit.as_deref(), Some(head.trim()));
    assert!(git(root, &["log", "-1", "--format=%B"]).contains(&format!("Kaizen-Reverts: {sha}")));
    assert_eq!(commits(root), 3, "no second revert");
    assert_eq!(
        std::fs::read_to_string(root.join("config/app.yaml")).expect("read"),
        "cache_mb: 128\n"
    );
}

trait NowForTest {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc>;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc> {
        kaizen_core::clock::Clock::now(self)
    }
}

/// A webhook on 127.0.0.1 recording what it is sent.
async fn webhook() -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use axum::extract::State;
    type Seen = Arc<std::sync::Mutex<Vec<serde_json::Value>>>;
    async fn hook(State(seen): State<Seen>, body: String) -> axum::http::StatusCode {
        seen.lock()
            .unwrap()
            .push(serde_json::from_str(&body).unwrap_or_default());
        axum::http::StatusCode::NO_CONTENT
    }
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn reconciled_applies_and_reverts_are_notified() {
    use kaizen_core::notify::NotificationKind;
    let dir = repo();
    let root = dir.path();
    let clock = ManualClock::at("2026-05-01T10:00:00Z".parse().expect("time"));
    let (url, seen) = webhook().await;
    let engine_with_hook = || {
        Engine::builder(settings(root))
            .clock(Arc::new(clock.clone()))
            .ledger(Ledger::open(&root.join(".kaizen/ledger.sqlite")).expect("ledger"))
            .applier(Box::new(GitApplier::open(root, None).expect("repo")))
            .validator(Box::new(SimpleValidator::default()))
            .notifiers([Box::new(kaizen_adapters::notify::WebhookNotifier::new(
                url.clone(),
                vec![NotificationKind::Applied, NotificationKind::Reverted],
                std::time::Duration::from_secs(5),
            )) as Box<dyn kaizen_core::notify::Notifier>])
            .build()
            .expect("engine")
    };
    // Killed right after the apply commit: the next cycle's reconciliation finds the commit.
    let id = {
        let mut ledger = Ledger::open(&root.join(".kaizen/ledger.sqlite")).expect("ledger");
        let id = ledger
            .insert_proposed(&candidate(), clock.now_for_test(), "rule fired")
            .expect("insert");
        ledger
            .set_pending(id, Some(Pending::Apply))
            .expect("pending");
        GitApplier::open(root, None)
            .expect("repo")
            .apply(id, &candidate())
            .expect("commit");
        id
    };
    let report = engine_with_hook().cycle().await.expect("cycle");
    assert_eq!(report.applied, vec![id], "{:?}", report.lines);
    {
        let got = seen.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["kind"], "applied");
        assert_eq!(got[0]["intervention"], id.to_string());
    }
    // Killed right after the revert commit: reconciled and notified too.
    let sha = {
        let ledger = Ledger::open(&root.join(".kaizen/ledger.sqlite")).expect("ledger");
        ledger.get(id).expect("row").commit.expect("commit")
    };
    {
        let mut ledger = Ledger::open(&root.join(".kaizen/ledger.sqlite")).expect("ledger");
        ledger
            .set_pending(id, Some(Pending::Revert))
            .expect("pending");
        GitApplier::open(root, None)
            .expect("repo")
            .revert(id, &sha, "no effect")
            .expect("revert");
    }
    let report = engine_with_hook().cycle().await.expect("cycle");
    assert_eq!(report.reverted, vec![id], "{:?}", report.lines);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["kind"], "reverted");
    assert_eq!(got[1]["intervention"], id.to_string());
    // The stream says which stage found them.
    let events = Ledger::open(&root.join(".kaizen/ledger.sqlite"))
        .expect("ledger")
        .events_for(id)
        .expect("events");
    let reconciled: Vec<&str> = events
        .iter()
        .filter(|e| e.stage == "reconcile")
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(reconciled, ["applied", "reverted"], "{events:?}");
}
