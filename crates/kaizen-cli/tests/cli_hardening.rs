//! Issue 9 ("never makes things worse") and issue 10's CLI items, through the binary: hostile or
//! mistyped input is refused with its location, never panics, never grows the ledger, never
//! leaks a secret to a child process; the CLI behaves in pipes and terminals.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;

use std::io::Read as _;
use std::process::{Command, Stdio};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The 1-based line of the first line of `file` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

/// A rule that fires on the latest sample alone, with a short window (little baseline needed).
const RULE_NOW: &str = r#"  - id: grow-cache
    area: cache
    when: { signal: latency_ms, above: 200, for: 0s }
    change:
      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }
    predict: { signal: latency_ms, change: "-20%", within: 5m }
    risk: low
    confidence: 0.8
    rollback: revert
    because: "the working set no longer fits the cache"
"#;

// Issue 9 item 2: a duration typo used to pass config checks, commit, then panic on every run.
#[test]
fn issue9_duration_typos_are_refused_with_file_line_field_and_value() {
    let h = Harness::new(RULE_NOW, "");
    h.set_metric(0, 300.0);
    for (from, to, field) in [
        ("  settle: 5m\n", "  settle: 99999999d\n", "validate.settle"),
        ("  settle: 5m\n", "  settle: 3000000d\n", "validate.settle"),
        ("  settle: 5m\n", "  settle: 8d\n", "validate.settle"),
        (
            "  freeze_for: 24h\n",
            "  freeze_for: 99999999999d\n",
            "guards.freeze_for",
        ),
    ] {
        let cfg = h.file("kaizen.yaml");
        std::fs::write(h.repo.join("kaizen.yaml"), cfg.replacen(from, to, 1)).unwrap();
        let out = h.kaizen_at(0, &["cycle"]);
        let err = stderr(&out);
        let value = to.trim().split(": ").nth(1).unwrap();
        let line = line_of(&h.file("kaizen.yaml"), to.trim());
        assert_eq!(out.status.code(), Some(2), "{to}: {err}");
        assert!(err.contains(&format!("kaizen.yaml:{line}")), "{to}: {err}");
        assert!(err.contains(field) && err.contains(value), "{to}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        std::fs::write(h.repo.join("kaizen.yaml"), cfg).unwrap();
    }
    // A rule's `within` typo, located in the rules file.
    let rules = h.file("rules.yaml");
    std::fs::write(
        h.repo.join("rules.yaml"),
        rules.replace("within: 5m", "within: 99999999d"),
    )
    .unwrap();
    let out = h.kaizen_at(0, &["cycle"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("rules.yaml:7"), "{err}");
    assert!(err.contains("within") && err.contains("99999999d"), "{err}");
    // Nothing was committed by any of those runs.
    assert_eq!(
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
}

const HOSTILE_LESSON: &str = r#"id: L-hostile
scope:
  area: cache
when: the cache is too small
prefer: grow it
because: misses dominate latency
falsifiable: "latency_ms median_1h above 5"
retired_when: "latency_ms median_99999999d outside [1, 2]"
created: 2026-03-01T00:00:00Z
"#;

// Issue 9 item 3 (hand-written side) and item 11's "malformed lessons only on stderr": the
// lesson's condition used to panic `learn` and every start-up.
#[test]
fn issue9_a_hostile_lesson_condition_is_skipped_recorded_and_shown() {
    let h = Harness::new(RULE_GROW_CACHE, "");
    std::fs::create_dir_all(h.repo.join("lessons")).unwrap();
    h.add_file("lessons/L-hostile.yaml", HOSTILE_LESSON);
    h.observe_range(0, 3, |_| 100.0);
    for args in [&["learn"][..], &["cycle"], &["learn"]] {
        let out = h.kaizen_at(5, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&h.ok(6, &["events", "--kind", "lesson_invalid", "--json"])).unwrap();
    // Recorded once, though three runs met the file.
    assert_eq!(events.len(), 1, "{events:?}");
    let detail = events[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("L-hostile.yaml:8") && detail.contains("retired_when"),
        "{detail}"
    );
    let status: serde_json::Value = serde_json::from_str(&h.ok(6, &["status", "--json"])).unwrap();
    assert_eq!(status["invalid_lessons"].as_array().unwrap().len(), 1);
    assert!(
        h.ok(6, &["status"])
            .contains("invalid lesson files (skipped): 1")
    );
}

// Issue 9 item 9: a 50 MB `file_write` was refused only at apply, and stored again every cycle.
#[test]
fn issue9_an_oversize_file_write_is_refused_at_parse_and_the_ledger_stays_small() {
    let big = "x".repeat(3 * 1024 * 1024);
    let rule = format!(
        r#"  - id: blob
    area: blob
    when: {{ signal: latency_ms, above: 200, for: 0s }}
    change:
      - file_write: {{ file: config/blob.txt, content: "{big}" }}
    predict: {{ signal: latency_ms, change: "-20%", within: 30m }}
    risk: low
    confidence: 0.8
    rollback: revert
    because: "a blob"
"#
    );
    let h = Harness::new(&rule, "");
    for m in 0..3 {
        h.set_metric(m, 300.0);
        let out = h.kaizen_at(m, &["cycle"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("rules.yaml:6") && err.contains("rules[0].change[0]"),
            "{err}"
        );
        assert!(err.contains("3145728 bytes"), "{err}");
    }
    let size = |name: &str| {
        std::fs::metadata(h.repo.join(".kaizen").join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let total = size("ledger.sqlite") + size("ledger.sqlite-wal");
    assert!(total < 1024 * 1024, "ledger is {total} bytes");
    assert!(!h.repo.join("config/blob.txt").exists());
}

// Issue 9 item 10: the API key was inherited by signal, canary and notify commands.
#[test]
fn issue9_secrets_never_reach_child_processes() {
    const KEY: &str = "sk-test-NEVER-IN-A-CHILD-1234";
    const OTHER: &str = "db-password-NEVER-IN-A-CHILD";
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).display().to_string();
    let count = "env | grep -c -e sk-test-NEVER -e db-password-NEVER || true";
    let extra = format!(
        r#"secret_env: [KAIZEN_TEST_DB_PASSWORD]
llm:
  base_url: http://127.0.0.1:9/v1
  model: none
  api_key_env: KAIZEN_TEST_LLM_KEY
  timeout: 1s
  retries: 0
  may_change: ["config/**"]
canaries:
  cache:
    command: "{grep} > {canary}; true"
notify:
  - command: "{grep} >> {notify}; true"
    on: [applied]
"#,
        grep = "env | grep -c -e sk-test-NEVER -e db-password-NEVER",
        canary = out("canary.txt"),
        notify = out("notify.txt"),
    );
    let h = Harness::new(RULE_NOW, &extra);
    h.edit_config(
        "rules: rules.yaml\n",
        &format!("  leaked:\n    better: lower\n    source:\n      command: \"{count}\"\nrules: rules.yaml\n"),
    );
    h.edit_config(
        "  canary_required_from: medium\n",
        "  canary_required_from: low\n",
    );
    // The baseline the guards want before a change.
    h.observe_range(-8, 0, |_| 300.0);
    h.set_metric(0, 300.0);
    let now = h.at(0).to_rfc3339();
    let run = Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(["cycle", "--now", &now])
        .current_dir(&h.repo)
        .env("KAIZEN_TEST_LLM_KEY", KEY)
        .env("KAIZEN_TEST_DB_PASSWORD", OTHER)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run).contains("applied as commit"),
        "{}",
        stdout(&run)
    );
    let status: serde_json::Value = serde_json::from_str(&h.ok(1, &["status", "--json"])).unwrap();
    let leaked = status["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"] == "leaked")
        .unwrap()
        .clone();
    assert_eq!(
        leaked["value"].as_f64(),
        Some(0.0),
        "signal source: {leaked}"
    );
    for file in ["canary.txt", "notify.txt"] {
        let seen = std::fs::read_to_string(dir.path().join(file))
            .unwrap_or_else(|e| panic!("{file} was not written: {e}"));
        assert_eq!(seen.trim(), "0", "{file}");
    }
}

// Issue 9 item 11: non-UTF-8 config, missing rules file, errors printed twice.
#[test]
fn issue9_config_faults_are_located_and_said_once() {
    let h = Harness::new(RULE_NOW, "");
    let cfg = h.file("kaizen.yaml");
    let mut bytes = cfg.clone().into_bytes();
    let at = cfg.find("mode:").unwrap();
    bytes.splice(at..at, b"# caf\xe9\n".iter().copied());
    std::fs::write(h.repo.join("kaizen.yaml"), bytes).unwrap();
    let out = h.kaizen_at(0, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kaizen.yaml:2:6: not UTF-8"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        h.repo.join("kaizen.yaml"),
        cfg.replace("rules: rules.yaml", "rules: rulez.yaml"),
    )
    .unwrap();
    let out = h.kaizen_at(0, &["cycle"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = line_of(&cfg, "rules: rules.yaml");
    assert!(
        err.contains(&format!("kaizen.yaml:{line}: field `rules`")) && err.contains("rulez.yaml"),
        "{err}"
    );

    // A runtime failure (the ledger path is a directory) says its cause once.
    std::fs::write(h.repo.join("kaizen.yaml"), &cfg).unwrap();
    std::fs::create_dir_all(h.repo.join(".kaizen/ledger.sqlite")).unwrap();
    let out = h.kaizen_at(0, &["cycle"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("unable to open database file").count(),
        1,
        "{err}"
    );
}

// Issue 9 item 11: a cron `observe` meeting the lock lost its sample; "busy" looked like failure.
#[test]
fn issue9_busy_state_dir_has_its_own_exit_code_and_observe_waits_for_it() {
    let h = Harness::new(RULE_NOW, "");
    h.ok(0, &["observe"]);
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(h.repo.join(".kaizen/kaizen.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let out = h.kaizen_at(1, &["cycle"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("busy"), "{}", stderr(&out));
    let out = h.kaizen_at(1, &["observe", "--wait", "0s"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));

    // Waiting: the holder lets go while `observe` waits; the sample is kept.
    h.set_metric(2, 123.0);
    let now = h.at(2).to_rfc3339();
    let child = Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(["observe", "--now", &now])
        .current_dir(&h.repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    lock.unlock().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("recorded 1 sample(s)"),
        "{}",
        stdout(&out)
    );
}

// Issue 10: `kaizen interventions | head -1` panicked with a backtrace (exit 101).
#[test]
fn issue10_a_closed_pipe_ends_quietly_with_exit_0() {
    let h = Harness::new(RULE_NOW, "");
    h.observe_range(-8, 0, |_| 300.0);
    h.set_metric(0, 300.0);
    let out = h.ok(0, &["cycle"]);
    assert!(out.contains("applied as commit"), "{out}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(["interventions"])
        .arg("--now")
        .arg(h.at(1).to_rfc3339())
        .current_dir(&h.repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is written.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn has_script() -> bool {
    Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

// Issue 10: WARN lines carried ANSI colour codes when stderr was a file.
#[test]
fn issue10_colour_only_on_a_terminal_and_never_with_no_color() {
    let h = Harness::new(RULE_NOW, "");
    std::fs::remove_file(&h.metric).unwrap(); // the source fails: a WARN line
    let out = h.kaizen_at(0, &["observe"]);
    let err = stderr(&out);
    assert!(err.contains("WARN"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour in a file: {err:?}");
    if !has_script() {
        eprintln!("`script` not installed: terminal half skipped");
        return;
    }
    // On a pseudo-terminal (util-linux `script`), with and without NO_COLOR.
    let on_tty = |no_color: bool| {
        let cmd = format!(
            "{} observe --now {}",
            env!("CARGO_BIN_EXE_kaizen"),
            h.at(1).to_rfc3339()
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"])
            .current_dir(&h.repo)
            .env_remove("NO_COLOR");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    };
    let coloured = on_tty(false);
    assert!(coloured.contains("WARN"), "{coloured}");
    assert!(
        coloured.contains('\u{1b}'),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_tty(true);
    assert!(plain.contains("WARN"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "colour despite NO_COLOR: {plain:?}"
    );
}
