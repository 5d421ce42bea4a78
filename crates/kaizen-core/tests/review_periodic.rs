//! Issue 11: the runtime writes the meta-review on the review schedule (default weekly) into the
//! state dir — Markdown and self-contained HTML — records it and notifies with its path; the
//! ledger says whether one is due, so a restarted daemon does not write it twice.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use async_trait::async_trait;
use chrono::Duration;
use kaizen_core::clock::ManualClock;
use kaizen_core::config::Config;
use kaizen_core::engine::{Engine, EngineSettings, META_REVIEW};
use kaizen_core::ledger::Ledger;
use kaizen_core::notify::{Notification, NotificationKind, Notifier, NotifyError};
use kaizen_core::schedule::Schedule;
use kaizen_core::sim::DirectApplier;
use kaizen_core::span::Span;
use kaizen_core::validate::SimpleValidator;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Appends each notification to a file, as a `command:` notifier's script would.
struct ToFile(PathBuf);

#[async_trait]
impl Notifier for ToFile {
    fn name(&self) -> &str {
        "file"
    }
    fn wants(&self, kind: NotificationKind) -> bool {
        kind == NotificationKind::Review
    }
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .map_err(|e| NotifyError {
                notifier: "file".into(),
                message: e.to_string(),
            })?;
        writeln!(f, "{} {}", n.kind.as_str(), n.text).map_err(|e| NotifyError {
            notifier: "file".into(),
            message: e.to_string(),
        })
    }
}

fn engine(dir: &Path, clock: &ManualClock) -> Engine {
    let config = Config::parse(
        "signals:\n  latency_ms: { unit: ms, better: lower, alert_above: 200 }\n",
        &dir.join("kaizen.yaml"),
    )
    .unwrap();
    assert_eq!(
        config.schedule.review_every,
        Span::days(7),
        "weekly by default"
    );
    Engine::builder(EngineSettings::from_config(&config))
        .clock(Arc::new(clock.clone()))
        .ledger(Ledger::open(&dir.join(".kaizen/ledger.sqlite")).unwrap())
        .applier(Box::new(DirectApplier::new(dir)))
        .validator(Box::new(SimpleValidator::default()))
        .notifiers([Box::new(ToFile(dir.join("notified.txt"))) as Box<dyn Notifier>])
        .state_dir(dir.join(".kaizen"))
        .build()
        .unwrap()
}

fn reviews(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(".kaizen/reviews"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_weekly_review_is_written_once_per_week_recorded_and_notified_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".kaizen")).unwrap();
    let clock = ManualClock::at("2026-05-04T09:00:00Z".parse().unwrap());
    let mut e = engine(dir.path(), &clock);

    let first = e
        .periodic_review(Span::days(7))
        .await
        .unwrap()
        .expect("due");
    assert_eq!(
        reviews(dir.path()),
        vec!["review-2026-05-04T0900Z.html", "review-2026-05-04T0900Z.md"]
    );
    let md = std::fs::read_to_string(&first.markdown).unwrap();
    assert!(
        md.starts_with("# kaizen meta-review 2026-04-27 09:00 → 2026-05-04 09:00 UTC"),
        "{md}"
    );
    let html = std::fs::read_to_string(&first.html).unwrap();
    roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap();
    let notified = std::fs::read_to_string(dir.path().join("notified.txt")).unwrap();
    assert!(
        notified.starts_with("review meta-review of the last 7d written to ")
            && notified.contains(&first.html.display().to_string()),
        "{notified}"
    );

    // A day later (a restarted daemon, say): not due, nothing written, nothing notified.
    clock.set(clock_at(&clock, Duration::days(1)));
    assert_eq!(e.periodic_review(Span::days(7)).await.unwrap(), None);
    assert_eq!(reviews(dir.path()).len(), 2);

    // A week after the first: the next one.
    clock.set(clock_at(&clock, Duration::days(6)));
    let second = e
        .periodic_review(Span::days(7))
        .await
        .unwrap()
        .expect("due again");
    assert!(second.html.ends_with("review-2026-05-11T0900Z.html"));
    let events: Vec<_> = e
        .ledger()
        .events_between(
            "2026-05-01T00:00:00Z".parse().unwrap(),
            "2026-06-01T00:00:00Z".parse().unwrap(),
        )
        .unwrap()
        .into_iter()
        .filter(|ev| ev.kind == META_REVIEW)
        .collect();
    assert_eq!(events.len(), 2);
    let kaizen_core::event::EngineEvent::MetaReview { review: data, .. } = &events[1].event else {
        panic!("{:?}", events[1]);
    };
    assert_eq!(data["scheduled"], true);
    assert_eq!(data["written_to"], second.html.display().to_string());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notified.txt"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}

fn clock_at(clock: &ManualClock, by: Duration) -> chrono::DateTime<chrono::Utc> {
    use kaizen_core::clock::Clock as _;
    clock.now() + by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_runs_the_review_on_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".kaizen")).unwrap();
    let clock = ManualClock::at("2026-05-04T09:00:00Z".parse().unwrap());
    let e = engine(dir.path(), &clock);
    let handle = kaizen_core::runtime::Runtime::spawn(e, Schedule::new(Default::default()));
    handle.ready().await.unwrap();
    let mut progress = handle.progress();
    // The first tick runs every task that is due, the review among them.
    while !handle.last_steps().contains_key("review") {
        progress.changed().await.unwrap();
    }
    let step = &handle.last_steps()["review"];
    assert!(step.ok, "{}", step.detail);
    assert!(step.detail.starts_with("written to "), "{}", step.detail);
    handle.shutdown().await.unwrap();
    assert_eq!(reviews(dir.path()).len(), 2);
}
