//! Issue 13, review branches: in `mode: review` a guarded candidate becomes branch
//! `kaizen/K-000001` on a real bare remote with one commit carrying the decision chain, status
//! `awaiting_review`. A human's merge — `git merge`, squash or rebase — makes it `applied` and
//! validated from then; a deleted branch makes it `rejected` (with the reason a human's last
//! commit gives); a stale branch is rebased when clean, else escalated. Checked with the `git` CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use chrono::{DateTime, Duration, Utc};
use kaizen_adapters::git::{GitApplier, GitPublisher};
use kaizen_core::clock::ManualClock;
use kaizen_core::config::Config;
use kaizen_core::engine::{Engine, EngineSettings};
use kaizen_core::intervention::{Candidate, InterventionId, Status};
use kaizen_core::ledger::Ledger;
use kaizen_core::signal::Sample;
use kaizen_core::validate::Look;
use std::sync::Arc;

mod support;
use support::{Constant, Once, Recorder, Remote, cache_candidate, git};

const BRANCH: &str = "kaizen/K-000001";

impl Remote {
    fn branch_exists(&self) -> bool {
        !git(&self.remote, &["branch", "--list", BRANCH]).is_empty()
    }
}

/// The candidate with the trigger and a cited lesson, for the decision chain in the message.
fn candidate() -> Candidate {
    let mut c = cache_candidate("once");
    c.origin.trigger = "latency_ms above 200 for 10m (last 250)".into();
    c.origin.cites = vec!["L-cache-first".into()];
    c
}

const CONFIG: &str = "signals:\n  latency_ms: { unit: ms, better: lower }\nvalidate: { settle: 5m }\n\
                      mode: autonomous\nmodes: { cache: review }\n\
                      git: { remote: origin, branch: main, push: true }\n";

fn t0() -> DateTime<Utc> {
    "2026-05-01T10:00:00Z".parse().unwrap()
}

fn engine(f: &Remote, clock: &ManualClock, recorder: &Recorder) -> Engine {
    let config = Config::parse(CONFIG, &f.work.join("kaizen.yaml")).unwrap();
    let git_config = config.git.clone().unwrap();
    let clock_arc: Arc<dyn kaizen_core::clock::Clock> = Arc::new(clock.clone());
    let open = || {
        GitApplier::open(&f.work, Some("main"))
            .unwrap()
            .with_clock(clock_arc.clone())
    };
    let mut e = Engine::builder(EngineSettings::from_config(&config))
        .clock(clock_arc.clone())
        .ledger(Ledger::open(&f.work.join(".kaizen/ledger.sqlite")).unwrap())
        .source(Box::new(Constant))
        .proposer(Box::new(Once::new(candidate())))
        .applier(Box::new(open()))
        .publisher(Box::new(GitPublisher::new(open(), &git_config).unwrap()))
        .review_desk(Box::new(GitPublisher::new(open(), &git_config).unwrap()))
        .validator(Box::new(recorder.clone()))
        .build()
        .unwrap();
    let before: Vec<Sample> = (1..=60)
        .map(|m| Sample::new("latency_ms", t0() - Duration::minutes(m), 250.0))
        .collect();
    e.record_samples(&before).unwrap();
    e
}

const ID: InterventionId = InterventionId(1);

/// The first cycle opens the review branch; returns its commit.
async fn opened(f: &Remote, e: &mut Engine) -> String {
    let report = e.cycle().await.unwrap();
    let iv = e.ledger().get(ID).unwrap();
    assert_eq!(iv.status, Status::AwaitingReview, "{:?}", report.lines);
    let sha = f.remote_rev(BRANCH);
    assert_eq!(iv.commit.as_deref(), Some(sha.as_str()));
    sha
}

#[tokio::test]
async fn a_review_branch_carries_the_decision_chain_and_a_git_merge_applies_it() {
    let f = Remote::new();
    let clock = ManualClock::at(t0());
    let recorder = Recorder::default();
    let mut e = engine(&f, &clock, &recorder);
    let main_before = f.remote_rev("main");
    let sha = opened(&f, &mut e).await;
    // One commit on the remote's main; nothing changed locally or on main.
    assert_eq!(f.remote_rev(&format!("{BRANCH}~1")), main_before);
    assert_eq!(f.remote_rev("main"), main_before);
    assert_eq!(git(&f.work, &["rev-parse", "HEAD"]), main_before);
    assert_eq!(git(&f.work, &["status", "--porcelain"]), "");
    let msg = git(&f.remote, &["log", "-1", "--format=%B", BRANCH]);
    for part in [
        "kaizen: grow cache",
        "misses dominate",
        "Trigger: latency_ms above 200 for 10m (last 250)",
        "Prediction: latency_ms",
        "Guards:",
        "Lessons cited: L-cache-first",
        "Kaizen-Intervention: K-000001",
    ] {
        assert!(msg.contains(part), "{part:?} missing from:\n{msg}");
    }
    assert!(
        msg.trim_end()
            .rsplit_once("\n\n")
            .unwrap()
            .1
            .starts_with("Kaizen-Intervention: K-000001"),
        "trailers stay last:\n{msg}"
    );
    // Waiting: nothing happens while nobody merges.
    clock.set(t0() + Duration::minutes(1));
    e.cycle().await.unwrap();
    assert_eq!(e.ledger().get(ID).unwrap().status, Status::AwaitingReview);
    // A human merges it with a merge commit and pushes.
    f.human_fetch();
    git(
        &f.human,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge review",
            &format!("origin/{BRANCH}"),
        ],
    );
    git(&f.human, &["push", "-q", "origin", "main"]);
    let merged_at = t0() + Duration::minutes(2);
    clock.set(merged_at);
    e.cycle().await.unwrap();
    let iv = e.ledger().get(ID).unwrap();
    assert_eq!(iv.status, Status::Applied);
    assert_eq!(iv.commit.as_deref(), Some(sha.as_str()));
    assert_eq!(iv.applied_at, Some(merged_at));
    assert_eq!(iv.due_at, Some(merged_at + Duration::minutes(35)));
    // The local checkout follows the remote, clean.
    assert_eq!(git(&f.work, &["rev-parse", "HEAD"]), f.remote_rev("main"));
    assert_eq!(git(&f.work, &["status", "--porcelain"]), "");
    assert!(
        std::fs::read_to_string(f.work.join("config/app.yaml"))
            .unwrap()
            .contains("cache_mb: 256")
    );
    assert!(
        e.check(false).unwrap().is_clean(),
        "{:?}",
        e.check(false).unwrap()
    );
    // Validated like any other, from the merge.
    clock.set(merged_at + Duration::minutes(36));
    e.cycle().await.unwrap();
    assert_eq!(
        recorder.0.lock().unwrap().clone(),
        vec![(Look::Final, merged_at)]
    );
    assert_eq!(e.ledger().get(ID).unwrap().status, Status::Validated);
}

#[tokio::test]
async fn a_squash_merge_is_noticed_by_its_trailer() {
    let f = Remote::new();
    let clock = ManualClock::at(t0());
    let recorder = Recorder::default();
    let mut e = engine(&f, &clock, &recorder);
    opened(&f, &mut e).await;
    f.human_fetch();
    git(
        &f.human,
        &["merge", "-q", "--squash", &format!("origin/{BRANCH}")],
    );
    // git's own squash message (the branch's commits, indented).
    git(&f.human, &["commit", "-q", "--no-edit"]);
    git(&f.human, &["push", "-q", "origin", "main"]);
    let squash = f.remote_rev("main");
    clock.set(t0() + Duration::minutes(2));
    e.cycle().await.unwrap();
    let iv = e.ledger().get(ID).unwrap();
    assert_eq!(iv.status, Status::Applied);
    assert_eq!(iv.commit.as_deref(), Some(squash.as_str()));
    assert_eq!(git(&f.work, &["rev-parse", "HEAD"]), squash);
    assert!(
        e.check(false).unwrap().is_clean(),
        "{:?}",
        e.check(false).unwrap()
    );
    // And it reverts like any other applied change, on the remote.
    e.revert(ID, "operator").unwrap();
    assert_eq!(e.ledger().get(ID).unwrap().status, Status::Reverted);
    assert_eq!(
        git(&f.remote, &["show", "main:config/app.yaml"]),
        "cache_mb: 128\nworkers: 4"
    );
}

#[tokio::test]
async fn a_rebase_merge_onto_a_moved_target_is_noticed() {
    let f = Remote::new();
    let clock = ManualClock::at(t0());
    let recorder = Recorder::default();
    let mut e = engine(&f, &clock, &recorder);
    opened(&f, &mut e).await;
    // Someone else lands first; the reviewer then rebases the branch onto main and merges.
    f.human_push("README.md", "service config, v2\n", "docs: v2");
    git(
        &f.human,
        &[
            "checkout",
            "-q",
            "-b",
            "review",
            &format!("origin/{BRANCH}"),
        ],
    );
    git(&f.human, &["rebase", "-q", "main"]);
    git(&f.human, &["checkout", "-q", "main"]);
    git(&f.human, &["merge", "-q", "--ff-only", "review"]);
    git(&f.human, &["push", "-q", "origin", "main"]);
    let rebased = f.remote_rev("main");
    clock.set(t0() + Duration::minutes(2));
    e.cycle().await.unwrap();
    let iv = e.ledger().get(ID).unwrap();
    assert_eq!(iv.status, Status::Applied);
    assert_eq!(iv.commit.as_deref(), Some(rebased.as_str()));
    assert!(
        e.check(false).unwrap().is_clean(),
        "{:?}",
        e.check(false).unwrap()
    );
}

#[tokio::test]
async fn a_deleted_branch_is_rejected_with_the_reason_its_last_commit_gives() {
    let f = Remote::new();
    let clock = ManualClock::at(t0());
    let recorder = Recorder::default();
    let mut e = engine(&f, &clock, &recorder);
    opened(&f, &mut e).await;
    // The reviewer says why on the branch, kaizen sees it, then the branch is deleted.
    f.human_fetch();
    git(
        &f.human,
        &[
            "checkout",
            "-q",
            "-b",
            "review",
            &format!("origin/{BRANCH}"),
        ],
    );
    git(
        &f.human,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "Rejected: the cache is not the bottleneck",
        ],
    );
    git(
        &f.human,
        &["push", "-q", "origin", &format!("review:{BRANCH}")],
    );
    clock.set(t0() + Duration::minutes(1));
    e.cycle().await.unwrap();
    assert_eq!(e.ledger().get(ID).unwrap().status, Status::AwaitingReview);
    git(&f.human, &["push", "-q", "origin", "--delete", BRANCH]);
    clock.set(t0() + Duration::minutes(2));
    e.cycle().await.unwrap();
    let iv = e.ledger().get(ID).unwrap();
    assert_eq!(iv.status, Status::Rejected);
    assert!(
        iv.reason.contains("the cache is not the bottleneck"),
        "{}",
        iv.reason
    );
    assert!(
        e.check(false).unwrap().is_clean(),
        "{:?}",
        e.check(false).unwrap()
    );
    // Nothing reached main.
    assert_eq!(
        git(&f.remote, &["show", "main:config/app.yaml"]),
        "cache_mb: 128\nworkers: 4"
    );
}

#[tokio::test]
async fn a_stale_branch_is_rebased_when_clean_and_escalated_when_not() {
    let f = Remote::new();
    let clock = ManualClock::at(t0());
    let recorder = Recorder::default();
    let mut e = engine(&f, &clock, &recorder);
    let first = opened(&f, &mut e).await;
    // The target moves (another file): kaizen rebases its branch, same trailers.
    let docs = f.human_push("README.md", "service config, v2\n", "docs: v2");
    clock.set(t0() + Duration::minutes(1));
    e.cycle().await.unwrap();
    let rebased = f.remote_rev(BRANCH);
    assert_ne!(rebased, first);
    assert_eq!(f.remote_rev(&format!("{BRANCH}~1")), docs);
    let msg = git(&f.remote, &["log", "-1", "--format=%B", BRANCH]);
    assert!(msg.contains("Kaizen-Intervention: K-000001"), "{msg}");
    let iv = e.ledger().get(ID).unwrap();
    assert_eq!(iv.status, Status::AwaitingReview);
    assert_eq!(iv.commit.as_deref(), Some(rebased.as_str()));
    // The target changes the same line: no clean rebase; marked stale and escalated, once.
    f.human_push("config/app.yaml", "cache_mb: 512\nworkers: 4\n", "ops: 512");
    clock.set(t0() + Duration::minutes(2));
    let r = e.cycle().await.unwrap();
    assert_eq!(r.escalations.len(), 1, "{:?}", r.lines);
    assert!(r.escalations[0].contains("stale"), "{:?}", r.escalations);
    assert_eq!(f.remote_rev(BRANCH), rebased);
    clock.set(t0() + Duration::minutes(3));
    let r = e.cycle().await.unwrap();
    assert!(r.escalations.is_empty(), "{:?}", r.escalations);
    assert_eq!(e.ledger().get(ID).unwrap().status, Status::AwaitingReview);
    assert!(f.branch_exists());
}
