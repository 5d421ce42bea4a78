//! Issue 13, hooks: `on_apply` / `on_revert` commands run after kaizen's commits (e.g. to
//! reload the service); a failing `on_apply` reverts the change at once, recorded with the
//! hook's output. Real git repo, real SQLite file, real shell commands.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use kaizen_adapters::git::GitApplier;
use kaizen_adapters::hooks::CommandHooks;
use kaizen_core::clock::ManualClock;
use kaizen_core::config::Config;
use kaizen_core::engine::{Engine, EngineSettings};
use kaizen_core::intervention::{InterventionId, Status};
use kaizen_core::ledger::Ledger;
use kaizen_core::propose::{Proposals, ProposeContext, ProposeError, Proposer};
use kaizen_core::signal::Sample;
use kaizen_core::validate::SimpleValidator;
use std::sync::{Arc, Mutex};

mod support;
use support::{Constant, git};

struct Once(Mutex<Vec<kaizen_core::intervention::Candidate>>);

#[async_trait]
impl Proposer for Once {
    fn name(&self) -> &str {
        "once"
    }
    async fn propose(&self, _ctx: &ProposeContext) -> Result<Proposals, ProposeError> {
        Ok(Proposals {
            candidates: std::mem::take(&mut *self.0.lock().unwrap()),
            rejected: vec![],
        })
    }
}

const RULE: &str = "rules:\n  - id: grow\n    area: cache\n    when: { signal: latency_ms, above: 200 }\n    change:\n      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }\n    predict: { signal: latency_ms, change: \"-20%\", within: 30m }\n    risk: low\n    confidence: 0.8\n    rollback: revert\n    because: misses\n";

fn setup(hooks: &str) -> (tempfile::TempDir, Engine, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("repo");
    std::fs::create_dir_all(r.join("config")).unwrap();
    git(&r, &["init", "-q", "-b", "main"]);
    git(&r, &["config", "user.name", "T"]);
    git(&r, &["config", "user.email", "t@example.invalid"]);
    std::fs::write(r.join("config/app.yaml"), "cache_mb: 128\n").unwrap();
    std::fs::write(r.join(".git/info/exclude"), "/.kaizen/\n").unwrap();
    git(&r, &["add", "-A"]);
    git(&r, &["commit", "-q", "-m", "init"]);
    let config = Config::parse(
        &format!("signals:\n  latency_ms: {{ unit: ms, better: lower }}\n{hooks}"),
        &r.join("kaizen.yaml"),
    )
    .unwrap();
    let rules = kaizen_core::rules::parse_rules(
        RULE,
        &r.join("rules.yaml"),
        &["latency_ms".to_string()].into(),
    )
    .unwrap();
    let clock = ManualClock::at("2026-05-01T10:00:00Z".parse().unwrap());
    let mut e = Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::open(&r.join(".kaizen/ledger.sqlite")).unwrap())
        .source(Box::new(Constant))
        .proposer(Box::new(Once(Mutex::new(vec![rules[0].candidate.clone()]))))
        .applier(Box::new(GitApplier::open(&r, None).unwrap()))
        .hooks(Box::new(CommandHooks::from_config(&config).unwrap()))
        .validator(Box::new(SimpleValidator::default()))
        .build()
        .unwrap();
    let t0: DateTime<Utc> = "2026-05-01T10:00:00Z".parse().unwrap();
    let before: Vec<Sample> = (1..=60)
        .map(|m| Sample::new("latency_ms", t0 - Duration::minutes(m), 250.0))
        .collect();
    e.record_samples(&before).unwrap();
    (dir, e, clock)
}

#[tokio::test]
async fn a_failing_on_apply_reverts_at_once_with_the_hook_output_recorded() {
    let (dir, mut e, _clock) = setup(
        "hooks:\n  on_apply: { command: \"echo reloading $KAIZEN_INTERVENTION; echo 'config rejected by service' >&2; exit 4\", timeout: 10s }\n",
    );
    let report = e.cycle().await.unwrap();
    let id = InterventionId(1);
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(iv.status, Status::Reverted, "{:?}", report.lines);
    assert!(iv.reason.contains("on_apply hook failed"), "{}", iv.reason);
    assert!(
        iv.reason.contains("config rejected by service"),
        "{}",
        iv.reason
    );
    let repo = dir.path().join("repo");
    // Two commits: the apply and its revert, which is HEAD; the file is back.
    let head = git(&repo, &["rev-parse", "HEAD"]);
    assert_eq!(iv.revert_commit.as_deref(), Some(head.as_str()));
    assert!(
        git(&repo, &["log", "-1", "--format=%B"])
            .contains(&format!("Kaizen-Reverts: {}", iv.commit.unwrap()))
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("config/app.yaml")).unwrap(),
        "cache_mb: 128\n"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    let ev = e.ledger().events_for(id).unwrap();
    let failed = ev.iter().find(|e| e.kind == "hook_failed").unwrap();
    assert!(
        failed.detail.contains("reloading K-000001"),
        "{}",
        failed.detail
    );
    assert!(
        failed.detail.contains("exit status: 4"),
        "{}",
        failed.detail
    );
}

#[tokio::test]
async fn hooks_run_after_apply_and_revert_with_the_commit_in_their_environment() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let (d2, mut e, clock) = setup(&format!(
        "hooks:\n  on_apply: {{ command: \"echo $KAIZEN_EVENT $KAIZEN_INTERVENTION $KAIZEN_COMMIT >> {l}\" }}\n  on_revert: {{ command: \"echo $KAIZEN_EVENT $KAIZEN_INTERVENTION $KAIZEN_COMMIT >> {l}\" }}\n",
        l = log.display()
    ));
    e.cycle().await.unwrap();
    let id = InterventionId(1);
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(iv.status, Status::Applied);
    let apply_sha = iv.commit.clone().unwrap();
    clock.set("2026-05-01T10:05:00Z".parse().unwrap());
    e.revert(id, "operator").unwrap();
    let revert_sha = e.ledger().get(id).unwrap().revert_commit.unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("apply K-000001 {apply_sha}\nrevert K-000001 {revert_sha}\n")
    );
    drop(d2);
}

#[tokio::test]
async fn a_hanging_on_apply_times_out_and_reverts() {
    let (_dir, mut e, _clock) =
        setup("hooks:\n  on_apply: { command: \"sleep 30\", timeout: 1s }\n");
    e.cycle().await.unwrap();
    let iv = e.ledger().get(InterventionId(1)).unwrap();
    assert_eq!(iv.status, Status::Reverted);
    assert!(iv.reason.contains("timed out"), "{}", iv.reason);
}
