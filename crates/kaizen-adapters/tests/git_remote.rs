//! Issue 13, the GitOps remote: kaizen pushes each apply and revert to a real bare repository
//! (`git init --bare`), never force-pushes, replays its commit on a concurrent human push when
//! that is clean and escalates when not, and starts an intervention's validation clock only
//! once its commit is on the remote. Everything is checked with the `git` CLI.
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
use std::process::Command;
use std::sync::Arc;

mod support;
use support::{Constant, Once, Recorder, Remote, cache_candidate, git};

impl Remote {
    /// The remote's `main`.
    fn remote_main(&self) -> String {
        self.remote_rev("main")
    }

    /// Makes the remote refuse every push (a pre-receive hook that exits 1), or accept again.
    fn refuse_pushes(&self, refuse: bool) {
        let hook = self.remote.join("hooks/pre-receive");
        if refuse {
            std::fs::write(
                &hook,
                "#!/bin/sh\necho 'read-only: deploy freeze' >&2\nexit 1\n",
            )
            .unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        } else {
            std::fs::remove_file(&hook).unwrap();
        }
    }

    fn is_ancestor(&self, a: &str, b: &str) -> bool {
        Command::new("git")
            .args(["merge-base", "--is-ancestor", a, b])
            .current_dir(&self.remote)
            .status()
            .unwrap()
            .success()
    }
}

fn candidate() -> Candidate {
    cache_candidate("once")
}

const CONFIG: &str = "signals:\n  latency_ms: { unit: ms, better: lower }\nvalidate: { settle: 5m }\n\
                      git: { remote: origin, branch: main, push: true }\n";

fn t0() -> DateTime<Utc> {
    "2026-05-01T10:00:00Z".parse().unwrap()
}

fn engine(f: &Remote, clock: &ManualClock, recorder: &Recorder) -> Engine {
    let config = Config::parse(CONFIG, &f.work.join("kaizen.yaml")).unwrap();
    let git_config = config.git.clone().unwrap();
    let clock_arc: Arc<dyn kaizen_core::clock::Clock> = Arc::new(clock.clone());
    let applier = GitApplier::open(&f.work, Some("main"))
        .unwrap()
        .with_clock(clock_arc.clone());
    let publisher = GitPublisher::new(
        GitApplier::open(&f.work, Some("main"))
            .unwrap()
            .with_clock(clock_arc.clone()),
        &git_config,
    )
    .unwrap();
    let mut e = Engine::builder(EngineSettings::from_config(&config))
        .clock(clock_arc)
        .ledger(Ledger::open(&f.work.join(".kaizen/ledger.sqlite")).unwrap())
        .source(Box::new(Constant))
        .proposer(Box::new(Once::new(candidate())))
        .applier(Box::new(applier))
        .publisher(Box::new(publisher))
        .validator(Box::new(recorder.clone()))
        .build()
        .unwrap();
    // An hour of samples before, so the guards' baseline is there.
    let before: Vec<Sample> = (1..=60)
        .map(|m| Sample::new("latency_ms", t0() - Duration::minutes(m), 250.0))
        .collect();
    e.record_samples(&before).unwrap();
    e
}

fn only_id(e: &Engine) -> InterventionId {
    let all = e.ledger().all().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].id
}

fn kinds(e: &Engine, kind: &str) -> usize {
    e.ledger()
        .recent_events("publish", 1000)
        .unwrap()
        .iter()
        .filter(|ev| ev.kind == kind)
        .count()
}

#[tokio::test]
async fn apply_and_revert_are_pushed_and_validation_starts_at_the_push() {
    let f = Remote::new();
    let clock = ManualClock::at(t0());
    let recorder = Recorder::default();
    let mut e = engine(&f, &clock, &recorder);
    let report = e.cycle().await.unwrap();
    let id = only_id(&e);
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(iv.status, Status::Applied, "{:?}", report.lines);
    let head = git(&f.work, &["rev-parse", "HEAD"]);
    assert_eq!(iv.commit.as_deref(), Some(head.as_str()));
    // On the remote, with its trailers; the clock started at the push.
    assert_eq!(f.remote_main(), head);
    let msg = git(&f.remote, &["log", "-1", "--format=%B", "main"]);
    assert!(msg.contains(&format!("Kaizen-Intervention: {id}")), "{msg}");
    assert_eq!(iv.applied_at, Some(t0()));
    assert_eq!(iv.due_at, Some(t0() + Duration::minutes(35)));
    assert_eq!(kinds(&e, "pushed"), 1);
    assert_eq!(kinds(&e, "validation_started"), 1);
    let st = e.status().unwrap().publish.unwrap();
    assert!(st.awaiting_push.is_empty());
    assert_eq!(st.consecutive_failures, 0);
    assert!(e.check(false).unwrap().is_clean());

    // A manual revert goes to the remote too.
    clock.set(t0() + Duration::minutes(10));
    e.revert(id, "operator says no").unwrap();
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(iv.status, Status::Reverted);
    let head = git(&f.work, &["rev-parse", "HEAD"]);
    assert_eq!(iv.revert_commit.as_deref(), Some(head.as_str()));
    assert_eq!(f.remote_main(), head);
    assert_eq!(
        git(&f.remote, &["show", "main:config/app.yaml"]),
        "cache_mb: 128\nworkers: 4"
    );
    assert_eq!(git(&f.work, &["status", "--porcelain"]), "");
}

#[tokio::test]
async fn a_concurrent_human_push_is_replayed_on_with_the_same_trailers_never_forced() {
    let f = Remote::new();
    let clock = ManualClock::at(t0());
    let recorder = Recorder::default();
    let mut e = engine(&f, &clock, &recorder);
    // The human pushes first, to another file: kaizen's push is refused (not a fast-forward).
    let theirs = f.human_push("README.md", "service config, v2\n", "docs: v2");
    let report = e.cycle().await.unwrap();
    let id = only_id(&e);
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(iv.status, Status::Applied, "{:?}", report.lines);
    let tip = f.remote_main();
    // The human's commit is kept as it is (an ancestor of the remote tip), kaizen's is on top.
    assert!(f.is_ancestor(&theirs, &tip));
    assert_eq!(git(&f.remote, &["rev-parse", "main~1"]), theirs);
    let msg = git(&f.remote, &["log", "-1", "--format=%B", "main"]);
    assert!(msg.contains(&format!("Kaizen-Intervention: {id}")), "{msg}");
    assert!(msg.contains("Kaizen-Area: cache"), "{msg}");
    assert_eq!(
        git(&f.remote, &["show", "main:config/app.yaml"]),
        "cache_mb: 256\nworkers: 4"
    );
    // The ledger follows the replayed commit; the local checkout is the remote's tip, clean,
    // with the human's change in the working tree.
    assert_eq!(iv.commit.as_deref(), Some(tip.as_str()));
    assert_eq!(git(&f.work, &["rev-parse", "HEAD"]), tip);
    assert_eq!(git(&f.work, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(f.work.join("README.md")).unwrap(),
        "service config, v2\n"
    );
    assert!(iv.due_at.is_some());
    let pushed = e.ledger().recent_events("publish", 10).unwrap();
    assert!(
        pushed
            .iter()
            .any(|ev| ev.kind == "pushed" && ev.detail.contains("replayed 1")),
        "{pushed:?}"
    );
    assert!(
        e.check(false).unwrap().is_clean(),
        "{:?}",
        e.check(false).unwrap()
    );
    // The remote's reflog-free history has no rewritten commit: fsck is clean.
    git(&f.remote, &["fsck", "--strict"]);

    // Its revert later names the replayed commit.
    e.revert(id, "no").unwrap();
    let msg = git(&f.remote, &["log", "-1", "--format=%B", "main"]);
    assert!(msg.contains(&format!("Kaizen-Reverts: {tip}")), "{msg}");
}

#[tokio::test]
async fn a_conflicting_human_push_escalates_and_nothing_is_forced_or_validated() {
    let f = Remote::new();
    let clock = ManualClock::at(t0());
    let recorder = Recorder::default();
    let mut e = engine(&f, &clock, &recorder);
    // The human changes the very line kaizen changes.
    let theirs = f.human_push(
        "config/app.yaml",
        "cache_mb: 512\nworkers: 4\n",
        "ops: cache 512",
    );
    let report = e.cycle().await.unwrap();
    let id = only_id(&e);
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(iv.status, Status::Applied);
    // The remote is exactly as the human left it; kaizen's commit is only local.
    assert_eq!(f.remote_main(), theirs);
    let local = git(&f.work, &["rev-parse", "HEAD"]);
    assert_eq!(iv.commit.as_deref(), Some(local.as_str()));
    assert!(!report.escalations.is_empty(), "{:?}", report.lines);
    assert!(
        report.escalations[0].contains("conflicts")
            && report.escalations[0].contains("config/app.yaml"),
        "{:?}",
        report.escalations
    );
    assert_eq!(kinds(&e, "push_diverged"), 1);
    // Validation never starts while the change is not on the remote, however long it waits.
    assert_eq!(iv.due_at, None);
    for m in [40, 80, 200] {
        clock.set(t0() + Duration::minutes(m));
        e.cycle().await.unwrap();
    }
    assert!(recorder.0.lock().unwrap().is_empty());
    assert_eq!(e.ledger().get(id).unwrap().status, Status::Applied);
    assert_eq!(f.remote_main(), theirs);
    // The same divergence is escalated once, not every retry.
    let escalations = e
        .ledger()
        .recent_events("publish", 1000)
        .unwrap()
        .into_iter()
        .filter(|ev| ev.kind == "escalation")
        .count();
    assert_eq!(escalations, 1);
    // `kaizen check` names the commit that is not on the remote.
    let check = e.check(false).unwrap();
    assert!(
        check
            .open()
            .any(|v| v.kind == "unpushed_commit" && v.subject == local),
        "{check:?}"
    );
}

#[tokio::test]
async fn a_refused_push_is_recorded_retried_with_backoff_and_validation_waits_for_it() {
    let f = Remote::new();
    let clock = ManualClock::at(t0());
    let recorder = Recorder::default();
    let mut e = engine(&f, &clock, &recorder);
    let before = f.remote_main();
    f.refuse_pushes(true);
    let report = e.cycle().await.unwrap();
    let id = only_id(&e);
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(iv.status, Status::Applied, "{:?}", report.lines);
    assert_eq!(iv.due_at, None);
    assert_eq!(f.remote_main(), before);
    assert_eq!(kinds(&e, "push_failed"), 1);
    let st = e.status().unwrap().publish.unwrap();
    assert_eq!(st.awaiting_push, vec![id]);
    assert_eq!(st.consecutive_failures, 1);
    assert!(
        st.last_error.as_deref().unwrap().contains("deploy freeze"),
        "{st:?}"
    );
    assert_eq!(st.next_attempt_at, Some(t0() + Duration::minutes(1)));
    // Inside the back-off: no attempt.
    clock.set(t0() + Duration::seconds(30));
    e.cycle().await.unwrap();
    assert_eq!(kinds(&e, "push_failed"), 1);
    // After it: tried again, failed again, the wait doubles.
    clock.set(t0() + Duration::minutes(1));
    e.cycle().await.unwrap();
    assert_eq!(kinds(&e, "push_failed"), 2);
    let st = e.status().unwrap().publish.unwrap();
    assert_eq!(st.next_attempt_at, Some(t0() + Duration::minutes(3)));
    // The third failure in a row escalates (once).
    clock.set(t0() + Duration::minutes(3));
    let r = e.cycle().await.unwrap();
    assert_eq!(kinds(&e, "push_failed"), 3);
    assert_eq!(r.escalations.len(), 1, "{:?}", r.lines);
    // Long past the original validation deadline: nothing judged, the change never deployed.
    clock.set(t0() + Duration::minutes(50));
    e.cycle().await.unwrap();
    assert!(recorder.0.lock().unwrap().is_empty());
    assert!(
        e.check(false)
            .unwrap()
            .open()
            .any(|v| v.kind == "unpushed_commit")
    );
    // The remote accepts again: pushed on the next due try; the clock starts then.
    f.refuse_pushes(false);
    let pushed_at = t0() + Duration::minutes(60);
    clock.set(pushed_at);
    e.cycle().await.unwrap();
    let iv = e.ledger().get(id).unwrap();
    assert_eq!(f.remote_main(), iv.commit.clone().unwrap());
    assert_eq!(iv.applied_at, Some(pushed_at));
    assert_eq!(iv.due_at, Some(pushed_at + Duration::minutes(35)));
    let st = e.status().unwrap().publish.unwrap();
    assert_eq!(st.consecutive_failures, 0);
    assert!(st.awaiting_push.is_empty());
    assert!(e.check(false).unwrap().is_clean());
    // Validated from the push, not from the commit.
    clock.set(pushed_at + Duration::minutes(36));
    e.cycle().await.unwrap();
    let looks = recorder.0.lock().unwrap().clone();
    assert_eq!(looks, vec![(Look::Final, pushed_at)]);
    assert_eq!(e.ledger().get(id).unwrap().status, Status::Validated);
}
