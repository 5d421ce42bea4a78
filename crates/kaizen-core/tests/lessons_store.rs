//! Lesson files: schema checks that name file/line/field, the store, rendering, relevance,
//! retirement by hand, the LLM rewrite hook and the starter library.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kaizen_core::learn::{LessonChange, RewriteError, apply_rewrite};
use kaizen_core::lesson::starter::{starter_lessons, starter_library_dir};
use kaizen_core::lesson::store::{change_writes, commit_message, render};
use kaizen_core::lesson::{
    Evidence, LessonError, LessonStatus, LessonStore, describe, new_lesson_from_yaml,
    relevant_lessons, retire, summary_line,
};
use std::path::Path;

const GOOD: &str = r#"id: L-cache-grow
scope:
  area: cache
  signal: latency_ms
  file: config/cache.yaml#size_mb
when: latency_ms is above 200 in area cache
prefer: grow config/cache.yaml#size_mb to 512
because: a bigger cache cut latency twice
falsifiable: latency_ms median_1h above 200
retired_when: latency_ms median_24h outside [120, 500]
calibrated_for:
  baseline_range: [240, 250]
created: 2026-03-01T00:00:00Z
status: active
evidence:
  - intervention: K-000001
    outcome: validated
  - intervention: K-000002
    outcome: validated
version: 2
"#;

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().unwrap()
}

#[test]
fn good_lesson_loads_and_renders_stably() {
    let l = new_lesson_from_yaml(GOOD, Path::new("lessons/L-cache-grow.yaml")).unwrap();
    assert_eq!(l.version, 2);
    assert_eq!(l.evidence.len(), 2);
    let text = render(&l);
    assert!(text.starts_with("# kaizen lesson L-cache-grow"), "{text}");
    assert_eq!(text, render(&l), "rendering is deterministic");
    let back = new_lesson_from_yaml(&text, Path::new("x.yaml")).unwrap();
    assert_eq!(back, l, "render → load round-trips\n{text}");
    // Tricky text survives too.
    let mut tricky = l.clone();
    tricky.because = "a: b # not a comment\n- not a list\n\"quoted\" 'single' {braces} [x]".into();
    tricky.when = "yes".into();
    tricky.prefer = "123".into();
    let retired = retire(
        &tricky,
        "the cache moved to redis: see K-000009",
        &[],
        at("2026-04-01T00:00:00Z"),
    );
    let back = new_lesson_from_yaml(&render(&retired), Path::new("x.yaml")).unwrap();
    assert_eq!(back, retired);
}

fn err_of(text: &str) -> Vec<String> {
    match new_lesson_from_yaml(text, Path::new("lessons/L-cache-grow.yaml")) {
        Ok(l) => panic!("accepted {l:?}"),
        Err(e) => e.errors(),
    }
}

#[test]
fn validation_names_file_line_and_field() {
    let e = err_of(&GOOD.replace(
        "because: a bigger cache cut latency twice",
        "because: \"  \"",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("lessons/L-cache-grow.yaml:8"), "{e:?}");
    assert!(
        e[0].contains("field `because`") && e[0].contains("must not be empty"),
        "{e:?}"
    );

    let e = err_of(&GOOD.replace("id: L-cache-grow", "id: cache grow"));
    assert!(
        e[0].starts_with("lessons/L-cache-grow.yaml:1") && e[0].contains("field `id`"),
        "{e:?}"
    );

    let e = err_of(&GOOD.replace("intervention: K-000002", "intervention: 42"));
    assert!(e[0].starts_with("lessons/L-cache-grow.yaml:18"), "{e:?}");
    assert!(e[0].contains("evidence[1].intervention"), "{e:?}");

    let e = err_of(&GOOD.replace("outcome: validated\n  - ", "outcome: great\n  - "));
    assert!(
        e[0].starts_with("lessons/L-cache-grow.yaml:17") && e[0].contains("evidence[0].outcome"),
        "{e:?}"
    );
    assert!(e[0].contains("great"), "{e:?}");

    let e = err_of(&GOOD.replace("version: 2", "version: 0"));
    assert!(
        e[0].contains(":20") && e[0].contains("field `version`"),
        "{e:?}"
    );

    let e = err_of(&GOOD.replace(
        "retired_when: latency_ms median_24h outside [120, 500]\n",
        "",
    ));
    assert!(e[0].contains("retired_when"), "{e:?}");

    let e = err_of(&GOOD.replace(
        "falsifiable: latency_ms median_1h above 200",
        "falsifiable: ''",
    ));
    assert!(e[0].contains(":9") && e[0].contains("falsifiable"), "{e:?}");

    // Shape errors come from the YAML seam, with line and field.
    let e = err_of(&GOOD.replace("version: 2", "version: two"));
    assert!(e[0].contains(":20") && e[0].contains("version"), "{e:?}");
    let e = err_of(&format!("{GOOD}colour: blue\n"));
    assert!(e[0].contains("colour"), "{e:?}");
    let e = err_of(&GOOD.replace("status: active", "status: asleep"));
    assert!(e[0].contains("status"), "{e:?}");

    // Several problems are all reported.
    let e = err_of(
        &GOOD
            .replace(
                "prefer: grow config/cache.yaml#size_mb to 512",
                "prefer: ''",
            )
            .replace("version: 2", "version: 0"),
    );
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn store_loads_good_files_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = LessonStore::new(dir.path().join("lessons"));
    // A missing directory holds no lessons.
    let (l, e) = store.load().unwrap();
    assert!(l.is_empty() && e.is_empty());
    std::fs::create_dir_all(store.dir()).unwrap();
    std::fs::write(store.path_for("L-cache-grow"), GOOD).unwrap();
    std::fs::write(
        store.dir().join("L-broken.yaml"),
        GOOD.replace("id: L-cache-grow", "id: L-broken")
            .replace("version: 2", "version: 0"),
    )
    .unwrap();
    std::fs::write(store.dir().join("L-misnamed.yaml"), GOOD).unwrap();
    std::fs::write(store.dir().join("README.md"), "not a lesson").unwrap();
    let (lessons, errors) = store.load().unwrap();
    assert_eq!(lessons.len(), 1);
    assert_eq!(lessons[0].id, "L-cache-grow");
    assert_eq!(errors.len(), 2, "{errors:?}");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        shown[0].contains("L-broken.yaml:20") && shown[0].contains("version"),
        "{shown:?}"
    );
    assert!(
        shown[1].contains("L-misnamed.yaml:1") && shown[1].contains("does not match the file name"),
        "{shown:?}"
    );
    assert_eq!(store.path_for("L-x"), dir.path().join("lessons/L-x.yaml"));
}

#[test]
fn retire_and_describe() {
    let l = new_lesson_from_yaml(GOOD, Path::new("x.yaml")).unwrap();
    let ev = Evidence {
        intervention: "K-000007".into(),
        outcome: "regressed".into(),
    };
    let r = retire(
        &l,
        "the cache was replaced",
        &[ev.clone(), ev],
        at("2026-05-01T00:00:00Z"),
    );
    assert_eq!(r.status, LessonStatus::Retired);
    assert_eq!(r.version, 3);
    assert_eq!(r.evidence.len(), 3);
    assert_eq!(r.retired_reason.as_deref(), Some("the cache was replaced"));
    assert!(kaizen_core::lesson::check(&r).is_empty());
    let shown = describe(&r);
    assert!(
        shown.contains("checked automatically on observations"),
        "{shown}"
    );
    assert!(shown.contains("the cache was replaced"), "{shown}");
    let mut free = l.clone();
    free.retired_when = "the cache is rewritten".into();
    assert!(describe(&free).contains("free text: never evaluated automatically"));
    assert!(summary_line(&r).starts_with("L-cache-grow [retired v3] cache: grow"));
}

#[test]
fn relevance_filters_active_lessons() {
    let base = new_lesson_from_yaml(GOOD, Path::new("x.yaml")).unwrap();
    let mut by_signal = base.clone();
    by_signal.id = "L-sig".into();
    by_signal.scope = kaizen_core::lesson::LessonScope {
        area: "db".into(),
        signal: Some("error_rate".into()),
        ..Default::default()
    };
    let mut by_file = base.clone();
    by_file.id = "L-file".into();
    by_file.scope = kaizen_core::lesson::LessonScope {
        area: "web".into(),
        file: Some("config/web/*.yaml".into()),
        ..Default::default()
    };
    let retired = retire(&base, "gone", &[], at("2026-05-01T00:00:00Z"));
    let lessons = vec![base.clone(), by_signal, by_file, retired];
    let ids =
        |v: Vec<&kaizen_core::lesson::Lesson>| v.iter().map(|l| l.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(relevant_lessons(&lessons, "cache", &[], &[])),
        vec!["L-cache-grow"]
    );
    assert_eq!(
        ids(relevant_lessons(&lessons, "other", &["error_rate"], &[])),
        vec!["L-sig"]
    );
    assert_eq!(
        ids(relevant_lessons(
            &lessons,
            "other",
            &[],
            &["config/web/pool.yaml#size"]
        )),
        vec!["L-file"]
    );
    assert_eq!(
        ids(relevant_lessons(
            &lessons,
            "other",
            &[],
            &["config/cache.yaml"]
        )),
        vec!["L-cache-grow"]
    );
    assert!(relevant_lessons(&lessons, "other", &["rss"], &["src/main.rs"]).is_empty());
}

#[test]
fn writes_and_commit_message() {
    let l = new_lesson_from_yaml(GOOD, Path::new("x.yaml")).unwrap();
    let r = retire(&l, "moved", &[], at("2026-05-01T00:00:00Z"));
    let changes = vec![
        LessonChange::Update(l.clone()),
        LessonChange::Retire(r.clone()),
    ];
    let writes = change_writes("lessons/", &changes);
    assert_eq!(writes.len(), 1, "the later change to the same lesson wins");
    assert_eq!(writes[0].0, "lessons/L-cache-grow.yaml");
    assert_eq!(writes[0].1.as_deref(), Some(render(&r).as_str()));
    assert_eq!(change_writes(".", &changes)[0].0, "L-cache-grow.yaml");
    let msg = commit_message("deterministic", &changes);
    assert!(
        msg.starts_with("kaizen learn: 0 lesson(s) created, 1 updated, 1 retired"),
        "{msg}"
    );
    assert!(msg.contains("- retire L-cache-grow (v3): moved"), "{msg}");
}

#[test]
fn llm_rewrite_only_touches_its_fields() {
    let l = new_lesson_from_yaml(GOOD, Path::new("x.yaml")).unwrap();
    let r = apply_rewrite(
        &l,
        r#"{"because": "  Growing the cache halved misses twice.  "}"#,
    )
    .unwrap();
    assert_eq!(r.because, "Growing the cache halved misses twice.");
    assert_eq!(r.version, 3);
    assert_eq!(
        (&r.id, &r.falsifiable, &r.evidence, &r.calibrated_for),
        (&l.id, &l.falsifiable, &l.evidence, &l.calibrated_for)
    );
    // Same text: no new version.
    assert_eq!(
        apply_rewrite(
            &r,
            r#"{"because": "Growing the cache halved misses twice."}"#
        )
        .unwrap()
        .version,
        3
    );
    let r2 = apply_rewrite(
        &l,
        r#"{"retired_when": "latency_ms median_24h outside [100,600]"}"#,
    )
    .unwrap();
    assert_eq!(r2.retired_when, "latency_ms median_24h outside [100, 600]");
    for (json, want) in [
        (r#"{"id": "L-evil"}"#, "field `id` may not be rewritten"),
        (
            r#"{"because": "x", "falsifiable": "never"}"#,
            "field `falsifiable` may not be rewritten",
        ),
        (r#"{"evidence": []}"#, "field `evidence`"),
        (r#"{"because": ""}"#, "must not be empty"),
        (r#"{"because": 3}"#, "must be a string"),
        (
            r#"{"retired_when": "when the moon is full"}"#,
            "must stay a condition",
        ),
        (r#"["because"]"#, "not a JSON object"),
        ("because: yes", "not a JSON object"),
    ] {
        let e = apply_rewrite(&l, json).unwrap_err();
        assert!(e.to_string().contains(want), "{json}: {e}");
    }
    let long = format!(r#"{{"because": "{}"}}"#, "x".repeat(5000));
    assert!(matches!(
        apply_rewrite(&l, &long),
        Err(RewriteError::BadValue { .. })
    ));
    // A free-text retired_when may become a condition or other free text.
    let mut free = l.clone();
    free.retired_when = "the cache is rewritten".into();
    assert_eq!(
        apply_rewrite(&free, r#"{"retired_when": "the cache layer is replaced"}"#)
            .unwrap()
            .retired_when,
        "the cache layer is replaced"
    );
}

// Issue 9 item 3: this rewrite was accepted and committed, then `learn` and `run` panicked.
#[test]
fn issue9_a_hostile_rewrite_is_refused_and_the_lesson_never_panics() {
    let l = new_lesson_from_yaml(GOOD, Path::new("x.yaml")).unwrap();
    let hostile =
        r#"{"because": "reworded", "retired_when": "latency_ms median_99999999d outside [1, 2]"}"#;
    let e = apply_rewrite(&l, hostile).unwrap_err();
    assert!(e.to_string().contains("retired_when"), "{e}");
    // Nor onto a free-text retired_when: a condition-shaped text with an absurd window is a
    // mistake, not prose.
    let mut free = l.clone();
    free.retired_when = "the cache is rewritten".into();
    assert!(apply_rewrite(&free, hostile).is_err());
    for window in ["31d", "367d", "99999999d", "99999999999999999999d"] {
        let text = format!("latency_ms median_{window} outside [1, 2]");
        let mut l2 = l.clone();
        l2.retired_when = text.clone();
        assert!(
            kaizen_core::lesson::check(&l2)
                .iter()
                .any(|(f, _)| f == "retired_when"),
            "{text}"
        );
        // Even if such a lesson were built by hand in code, evaluating it cannot panic.
        let recent = std::collections::BTreeMap::new();
        let _ = kaizen_core::lesson::retirement_check(&l2, &recent, at("2026-01-01T00:00:00Z"));
        let _ = kaizen_core::lesson::retirement_check(
            &l2,
            &recent,
            chrono::DateTime::<chrono::Utc>::MIN_UTC,
        );
    }
}

#[test]
fn starter_library_is_valid_and_embedded() {
    let (lessons, errors) = LessonStore::new(starter_library_dir()).load().unwrap();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(lessons.len() >= 6, "{}", lessons.len());
    assert!(
        lessons
            .iter()
            .all(|l| l.status == LessonStatus::Active && l.evidence.is_empty())
    );
    let embedded = starter_lessons();
    assert_eq!(
        embedded.len(),
        lessons.len(),
        "every starter file is embedded"
    );
    for (name, content) in embedded {
        let on_disk = std::fs::read_to_string(starter_library_dir().join(name)).unwrap();
        assert_eq!(on_disk, content, "{name}");
        let l = new_lesson_from_yaml(content, Path::new(name)).unwrap();
        assert_eq!(format!("{}.yaml", l.id), name);
    }
    // Starter lessons are free text: never auto-retired.
    assert!(lessons.iter().all(|l| {
        kaizen_core::lesson::retirement_check(l, &Default::default(), at("2026-01-01T00:00:00Z"))
            .is_none()
    }));
    let _: Option<LessonError> = None;
}
