//! The deterministic distiller on scripted histories: expected lessons, idempotence, avoid
//! lessons, supersession, retirement on observations (and never on missing data).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use kaizen_core::edit::Edit;
use kaizen_core::intervention::{Candidate, ExpectedChange, Origin, Prediction};
use kaizen_core::learn::deterministic::lesson_id;
use kaizen_core::learn::{
    DeterministicDistiller, DistillInput, Distiller, LessonChange, apply_rewrite,
};
use kaizen_core::lesson::store::change_writes;
use kaizen_core::lesson::{Lesson, LessonStatus, LessonStore};
use kaizen_core::validate::Figures;
use kaizen_core::{Intervention, InterventionId, Outcome, Risk, Sample, Span, Status};
use serde_json::Value;
use std::collections::BTreeMap;

fn t(h: i64) -> DateTime<Utc> {
    "2026-03-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::hours(h)
}

/// One finalized intervention on `file#key` in `area`, finalized at hour `h`.
fn iv(id: i64, area: &str, file: &str, key: &str, outcome: Outcome, h: i64) -> Intervention {
    Intervention {
        id: InterventionId(id),
        candidate: Candidate {
            area: area.into(),
            kind: "config_set".into(),
            title: format!("tune {key}"),
            hypothesis: "it helps".into(),
            change: vec![Edit::ConfigSet {
                file: file.into(),
                key: key.into(),
                value: serde_json::json!(512),
            }],
            prediction: Prediction {
                signal: "latency_ms".into(),
                change: ExpectedChange::Relative(-0.2),
                within: Span::hours(1),
            },
            risk: Risk::Low,
            confidence: 0.7,
            rollback: Some("revert".into()),
            origin: Origin {
                proposer: "rules".into(),
                rule: Some("slow".into()),
                trigger: "latency_ms above 200 for 10m".into(),
                ..Default::default()
            },
        },
        status: if outcome == Outcome::Validated {
            Status::Validated
        } else {
            Status::Reverted
        },
        outcome: Some(outcome),
        reason: String::new(),
        commit: Some("abc".into()),
        revert_commit: None,
        created_at: t(h - 2),
        applied_at: Some(t(h - 2)),
        due_at: Some(t(h)),
        finalized_at: Some(t(h)),
    }
}

fn figures(baseline: f64, post: f64) -> Value {
    serde_json::to_value(Figures {
        method: "hodges_lehmann_placebo".into(),
        n_before: 60,
        n_after: 60,
        gaps: 0,
        baseline: Some(baseline),
        post: Some(post),
        estimate: Some(post / baseline - 1.0),
        // An interval of ±3% around the estimate (a no_effect one rules out a quarter of −20%).
        lower: Some(post / baseline - 1.03),
        upper: Some(post / baseline - 0.97),
        level: Some(0.95),
        magnitude_met: Some(true),
        notes: vec![],
        ..Figures::default()
    })
    .unwrap()
}

/// A lesson directory on disk; changes go through render → file → load like the real loop.
struct World {
    dir: tempfile::TempDir,
    history: Vec<Intervention>,
    verdicts: BTreeMap<String, Value>,
    recent: BTreeMap<String, Vec<Sample>>,
}

impl World {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            history: vec![],
            verdicts: BTreeMap::new(),
            recent: BTreeMap::new(),
        }
    }
    fn add(&mut self, i: Intervention, baseline: f64, post: f64) {
        self.verdicts
            .insert(i.id.to_string(), figures(baseline, post));
        self.history.push(i);
    }
    fn store(&self) -> LessonStore {
        LessonStore::new(self.dir.path().join("lessons"))
    }
    fn lessons(&self) -> Vec<Lesson> {
        let (l, e) = self.store().load().unwrap();
        assert!(e.is_empty(), "{e:#?}");
        l
    }
    fn lesson(&self, id: &str) -> Lesson {
        self.lessons()
            .into_iter()
            .find(|l| l.id == id)
            .unwrap_or_else(|| panic!("no lesson {id}"))
    }
    /// One learn run at hour `h`; its changes are written to disk.
    fn learn(&self, h: i64) -> Vec<LessonChange> {
        let lessons = self.lessons();
        let d = DeterministicDistiller::default();
        // As the engine does: only the samples of the signals the distiller says it reads.
        let none = BTreeMap::new();
        let read = d.signals_read(&DistillInput {
            now: t(h),
            finalized: &self.history,
            verdicts: &self.verdicts,
            lessons: &lessons,
            recent: &none,
        });
        let recent: BTreeMap<String, Vec<Sample>> = self
            .recent
            .iter()
            .filter(|(k, _)| read.reads(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let input = DistillInput {
            now: t(h),
            finalized: &self.history,
            verdicts: &self.verdicts,
            lessons: &lessons,
            recent: &recent,
        };
        let changes = d.distill(&input).unwrap();
        std::fs::create_dir_all(self.store().dir()).unwrap();
        for (path, content) in change_writes("lessons", &changes) {
            std::fs::write(self.dir.path().join(path), content.unwrap()).unwrap();
        }
        changes
    }
    /// Hourly latency samples for the 24h before hour `h`, around `level`.
    fn observe(&mut self, h: i64, hours: i64, level: f64) {
        let v = (0..hours * 4)
            .map(|q| {
                Sample::new(
                    "latency_ms",
                    t(h) - Duration::minutes(q * 15),
                    level + (q % 5) as f64,
                )
            })
            .collect();
        self.recent.insert("latency_ms".into(), v);
    }
}

fn kinds(changes: &[LessonChange]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|c| {
            let k = match c {
                LessonChange::Create(_) => "create",
                LessonChange::Update(_) => "update",
                LessonChange::Retire(_) => "retire",
            };
            (k.to_string(), c.lesson().id.clone())
        })
        .collect()
}

const CACHE: (&str, &str) = ("config/cache.yaml", "size_mb");

#[test]
fn validated_changes_become_a_prefer_lesson_and_rerunning_is_a_no_op() {
    let mut w = World::new();
    w.add(
        iv(1, "cache", CACHE.0, CACHE.1, Outcome::Validated, 10),
        250.0,
        200.0,
    );
    w.add(
        iv(2, "cache", CACHE.0, CACHE.1, Outcome::Validated, 20),
        240.0,
        190.0,
    );
    // A lone failure elsewhere teaches nothing yet; inconclusive/blocked ones are ignored.
    w.add(
        iv(3, "db", "config/db.yaml", "pool", Outcome::NoEffect, 21),
        240.0,
        238.0,
    );
    let mut blocked = iv(4, "db", "config/db.yaml", "pool", Outcome::NoEffect, 22);
    blocked.status = Status::Blocked;
    w.add(blocked, 240.0, 240.0);

    let changes = w.learn(30);
    let id = lesson_id("cache", "config/cache.yaml#size_mb");
    assert_eq!(kinds(&changes), vec![("create".to_string(), id.clone())]);
    let l = w.lesson(&id);
    assert_eq!(l.version, 1);
    assert_eq!(l.created, t(30));
    assert_eq!(l.status, LessonStatus::Active);
    assert_eq!(l.scope.area, "cache");
    assert_eq!(l.scope.signal.as_deref(), Some("latency_ms"));
    assert_eq!(l.scope.file.as_deref(), Some("config/cache.yaml#size_mb"));
    assert_eq!(
        l.evidence
            .iter()
            .map(|e| (e.intervention.as_str(), e.outcome.as_str()))
            .collect::<Vec<_>>(),
        vec![("K-000001", "validated"), ("K-000002", "validated")]
    );
    // Latest validated: baseline 240, predicted −20% → falsified if the 1h median is above 192.
    assert_eq!(l.falsifiable, "latency_ms median_1h above 192");
    // Baselines 240..250 → calibrated range [120, 500].
    assert_eq!(l.retired_when, "latency_ms median_24h outside [120, 500]");
    assert_eq!(
        l.calibrated_for["baseline_range"],
        serde_json::json!([240.0, 250.0])
    );
    assert_eq!(
        l.calibrated_for["thresholds"]["falsified_above"],
        serde_json::json!(192.0)
    );
    assert_eq!(
        l.calibrated_for["verdicts"][0]["method"],
        "hodges_lehmann_placebo"
    );
    assert!(
        l.prefer.contains("set config/cache.yaml#size_mb to 512"),
        "{}",
        l.prefer
    );
    assert!(l.because.contains("2 of 2"), "{}", l.because);
    assert!(
        l.when.contains("latency_ms above 200 for 10m"),
        "{}",
        l.when
    );

    // Same history, previous output stored: nothing to do (several times over).
    assert!(w.learn(31).is_empty());
    assert!(w.learn(40).is_empty());

    // New evidence strengthens it: one new version, then stable again.
    w.add(
        iv(5, "cache", CACHE.0, CACHE.1, Outcome::Validated, 45),
        260.0,
        200.0,
    );
    let changes = w.learn(50);
    assert_eq!(kinds(&changes), vec![("update".to_string(), id.clone())]);
    let l2 = w.lesson(&id);
    assert_eq!(l2.version, 2);
    assert_eq!(l2.created, t(30), "created stays the first creation");
    assert_eq!(l2.evidence.len(), 3);
    assert_eq!(l2.retired_when, "latency_ms median_24h outside [120, 520]");
    assert!(w.learn(51).is_empty());
}

#[test]
fn repeated_failures_make_an_avoid_lesson_and_supersede_prefer() {
    let mut w = World::new();
    let id = lesson_id("cache", "config/cache.yaml#size_mb");
    let avoid = format!("{id}-avoid");
    w.add(
        iv(1, "cache", CACHE.0, CACHE.1, Outcome::Validated, 10),
        250.0,
        200.0,
    );
    assert_eq!(
        kinds(&w.learn(11)),
        vec![("create".to_string(), id.clone())]
    );

    w.add(
        iv(2, "cache", CACHE.0, CACHE.1, Outcome::NoEffect, 20),
        230.0,
        228.0,
    );
    // One failure: the prefer lesson records it, no avoid lesson yet.
    assert_eq!(
        kinds(&w.learn(21)),
        vec![("update".to_string(), id.clone())]
    );
    assert!(w.learn(22).is_empty());

    w.add(
        iv(3, "cache", CACHE.0, CACHE.1, Outcome::Regressed, 30),
        220.0,
        260.0,
    );
    let changes = w.learn(31);
    assert_eq!(
        kinds(&changes),
        vec![
            ("retire".to_string(), id.clone()),
            ("create".to_string(), avoid.clone())
        ]
    );
    let p = w.lesson(&id);
    assert_eq!(p.status, LessonStatus::Retired);
    assert!(
        p.retired_reason
            .as_deref()
            .unwrap()
            .contains(&format!("superseded by {avoid}")),
        "{p:?}"
    );
    let a = w.lesson(&avoid);
    assert_eq!(a.status, LessonStatus::Active);
    assert!(
        a.prefer
            .starts_with("avoid changing config/cache.yaml#size_mb"),
        "{}",
        a.prefer
    );
    assert_eq!(
        a.evidence
            .iter()
            .map(|e| e.intervention.as_str())
            .collect::<Vec<_>>(),
        vec!["K-000002", "K-000003"]
    );
    assert_eq!(a.retired_when, "latency_ms median_24h outside [110, 460]");
    assert!(w.learn(32).is_empty(), "idempotent after supersession");

    // A validated change on the same target lifts the avoid lesson and revives the prefer one.
    w.add(
        iv(4, "cache", CACHE.0, CACHE.1, Outcome::Validated, 40),
        235.0,
        180.0,
    );
    let changes = w.learn(41);
    assert_eq!(
        kinds(&changes),
        vec![
            ("update".to_string(), id.clone()),
            ("retire".to_string(), avoid.clone())
        ]
    );
    assert_eq!(w.lesson(&id).status, LessonStatus::Active);
    assert_eq!(w.lesson(&id).retired_reason, None);
    assert!(
        w.lesson(&avoid)
            .retired_reason
            .unwrap()
            .contains("K-000004")
    );
    assert!(w.learn(42).is_empty());
}

#[test]
fn failures_alone_make_an_avoid_lesson() {
    let mut w = World::new();
    w.add(
        iv(1, "db", "config/db.yaml", "pool", Outcome::NoEffect, 10),
        100.0,
        99.0,
    );
    w.add(
        iv(2, "db", "config/db.yaml", "pool", Outcome::Regressed, 20),
        120.0,
        140.0,
    );
    let changes = w.learn(21);
    let avoid = format!("{}-avoid", lesson_id("db", "config/db.yaml#pool"));
    assert_eq!(kinds(&changes), vec![("create".to_string(), avoid.clone())]);
    let a = w.lesson(&avoid);
    assert!(a.falsifiable.contains("is validated"), "{}", a.falsifiable);
    assert_eq!(a.retired_when, "latency_ms median_24h outside [50, 240]");
    assert!(w.learn(22).is_empty());
}

#[test]
fn retirement_fires_when_the_baseline_leaves_the_range_and_never_on_missing_data() {
    let mut w = World::new();
    w.add(
        iv(1, "cache", CACHE.0, CACHE.1, Outcome::Validated, 10),
        250.0,
        200.0,
    );
    w.add(
        iv(2, "cache", CACHE.0, CACHE.1, Outcome::Validated, 20),
        240.0,
        190.0,
    );
    let id = lesson_id("cache", "config/cache.yaml#size_mb");
    assert_eq!(w.learn(21).len(), 1);

    // Missing data: no samples at all, then only 2h of a 24h window, both far out of range.
    assert!(w.learn(100).is_empty());
    w.observe(100, 2, 40.0);
    assert!(
        w.learn(100).is_empty(),
        "2h of data never retires a 24h condition"
    );
    // Inside the range: stays.
    w.observe(100, 24, 300.0);
    assert!(w.learn(100).is_empty());
    // The workload moved: latency medians ~42 ms for a day, far below 120.
    w.observe(200, 24, 40.0);
    let changes = w.learn(200);
    assert_eq!(kinds(&changes), vec![("retire".to_string(), id.clone())]);
    let l = w.lesson(&id);
    assert_eq!(l.status, LessonStatus::Retired);
    assert_eq!(l.version, 2);
    assert_eq!(l.retired_at, Some(t(200)));
    let why = l.retired_reason.unwrap();
    assert!(
        why.contains("latency_ms median_24h = 42") && why.contains("outside [120, 500]"),
        "{why}"
    );
    assert!(w.learn(201).is_empty(), "a retired lesson stays retired");
    // Retired lessons are not offered to proposers.
    assert!(
        kaizen_core::lesson::relevant_lessons(&w.lessons(), "cache", &["latency_ms"], &[])
            .is_empty()
    );

    // New validated evidence in the new regime revives it, recalibrated.
    w.add(
        iv(3, "cache", CACHE.0, CACHE.1, Outcome::Validated, 210),
        45.0,
        36.0,
    );
    w.observe(220, 24, 40.0);
    let changes = w.learn(220);
    assert_eq!(kinds(&changes), vec![("update".to_string(), id.clone())]);
    let l = w.lesson(&id);
    assert_eq!(l.status, LessonStatus::Active);
    assert_eq!(l.retired_when, "latency_ms median_24h outside [22.5, 500]");
    assert!(w.learn(221).is_empty());
}

#[test]
fn hand_written_lessons_with_conditions_retire_and_free_text_never_does() {
    let mut w = World::new();
    let store = w.store();
    std::fs::create_dir_all(store.dir()).unwrap();
    let hand = |id: &str, retired_when: &str| {
        format!(
            "id: {id}\nscope:\n  area: web\nwhen: w\nprefer: p\nbecause: b\nfalsifiable: f\nretired_when: {retired_when}\ncreated: 2026-01-01T00:00:00Z\n"
        )
    };
    std::fs::write(
        store.path_for("L-web-cond"),
        hand("L-web-cond", "latency_ms median_24h above 30"),
    )
    .unwrap();
    std::fs::write(
        store.path_for("L-web-free"),
        hand("L-web-free", "latency is no longer a concern"),
    )
    .unwrap();
    w.observe(50, 24, 40.0);
    let changes = w.learn(50);
    assert_eq!(
        kinds(&changes),
        vec![("retire".to_string(), "L-web-cond".to_string())]
    );
    assert_eq!(w.lesson("L-web-free").status, LessonStatus::Active);
    assert!(w.learn(51).is_empty());
}

#[test]
fn an_llm_rewording_survives_the_next_run() {
    let mut w = World::new();
    w.add(
        iv(1, "cache", CACHE.0, CACHE.1, Outcome::Validated, 10),
        250.0,
        200.0,
    );
    w.learn(11);
    let id = lesson_id("cache", "config/cache.yaml#size_mb");
    let reworded = apply_rewrite(
        &w.lesson(&id),
        r#"{"because": "A larger cache absorbed the hot set.", "retired_when": "latency_ms median_24h outside [100, 600]"}"#,
    )
    .unwrap();
    assert_eq!(reworded.version, 2);
    let writes = change_writes("lessons", &[LessonChange::Update(reworded.clone())]);
    std::fs::write(
        w.dir.path().join(&writes[0].0),
        writes[0].1.as_ref().unwrap(),
    )
    .unwrap();
    assert!(
        w.learn(12).is_empty(),
        "deterministic facts unchanged: the rewording stays"
    );
    assert_eq!(w.lesson(&id), reworded);
    // New evidence regenerates the text from the facts.
    w.add(
        iv(2, "cache", CACHE.0, CACHE.1, Outcome::Validated, 20),
        240.0,
        190.0,
    );
    let changes = w.learn(21);
    assert_eq!(changes.len(), 1);
    assert_eq!(w.lesson(&id).version, 3);
}

#[test]
fn verdicts_stored_inside_a_verdict_or_missing_are_tolerated() {
    let mut w = World::new();
    let i1 = iv(1, "cache", CACHE.0, CACHE.1, Outcome::Validated, 10);
    w.verdicts.insert(i1.id.to_string(), serde_json::json!({"outcome": "validated", "summary": "ok", "figures": figures(250.0, 200.0)}));
    w.history.push(i1);
    w.history.push(iv(
        2,
        "web",
        "config/web.yaml",
        "workers",
        Outcome::Validated,
        11,
    ));
    let changes = w.learn(12);
    assert_eq!(changes.len(), 2);
    let cache = w.lesson(&lesson_id("cache", "config/cache.yaml#size_mb"));
    assert_eq!(cache.falsifiable, "latency_ms median_1h above 200");
    let web = w.lesson(&lesson_id("web", "config/web.yaml#workers"));
    assert!(
        web.retired_when.contains("no baseline was recorded"),
        "{}",
        web.retired_when
    );
    assert!(kaizen_core::lesson::retirement_check(&web, &w.recent, t(12)).is_none());
    assert!(w.learn(13).is_empty());
    println!("{}", kaizen_core::lesson::store::render(&cache));
}

#[test]
fn falsifiable_is_checkable_on_observations() {
    let mut w = World::new();
    w.add(
        iv(1, "cache", CACHE.0, CACHE.1, Outcome::Validated, 10),
        250.0,
        200.0,
    );
    w.learn(11);
    let l = w.lesson(&lesson_id("cache", "config/cache.yaml#size_mb"));
    use kaizen_core::lesson::falsification_check;
    assert!(
        !falsification_check(&l, &w.recent, t(20)).unwrap().holds(),
        "no data: not falsified"
    );
    w.observe(20, 1, 180.0);
    assert!(!falsification_check(&l, &w.recent, t(20)).unwrap().holds());
    w.observe(20, 1, 260.0);
    let e = falsification_check(&l, &w.recent, t(20)).unwrap();
    assert!(e.holds() && e.detail().contains("above 200"), "{e:?}");
}
