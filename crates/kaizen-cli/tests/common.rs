//! Shared harness for CLI tests: a real git repo in a tempdir, the real `kaizen` binary, a metric
//! file the signal's `command` source reads, and a clock set per invocation with `--now`.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use chrono::{DateTime, Duration, Utc};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub metric: PathBuf,
    pub t0: DateTime<Utc>,
}

pub const RULE_GROW_CACHE: &str = r#"  - id: grow-cache
    area: cache
    when: { signal: latency_ms, above: 200, for: 10m }
    change:
      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }
    predict: { signal: latency_ms, change: "-20%", within: 30m }
    risk: low
    confidence: 0.8
    rollback: revert
    because: "the working set no longer fits the cache; misses dominate latency"
"#;

pub fn git(repo: &Path, args: &[&str]) -> Output {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `kaizen ARGS` in `dir` (no clock override), for tests outside a [`Harness`].
pub fn kaizen_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(args)
        .current_dir(dir)
        .env_remove("KAIZEN_NOW")
        .env_remove("KAIZEN_CONFIG")
        .output()
        .expect("kaizen runs")
}

pub fn git_text(repo: &Path, args: &[&str]) -> String {
    String::from_utf8_lossy(&git(repo, args).stdout).into_owned()
}

impl Harness {
    /// Switches the config to the `simple` validator (commits the config change).
    pub fn use_simple_validator(&self) {
        self.edit_config("  settle: 5m\n", "  settle: 5m\n  method: simple\n");
    }

    /// Replaces `from` with `to` in kaizen.yaml and commits the change.
    pub fn edit_config(&self, from: &str, to: &str) {
        let cfg = self.file("kaizen.yaml");
        assert!(cfg.contains(from), "{from:?} not in kaizen.yaml");
        std::fs::write(self.repo.join("kaizen.yaml"), cfg.replacen(from, to, 1)).expect("write");
        git(&self.repo, &["commit", "-q", "-am", "edit kaizen.yaml"]);
    }

    /// Adds a committed file to the repository.
    pub fn add_file(&self, rel: &str, content: &str) {
        std::fs::write(self.repo.join(rel), content).expect("write");
        git(&self.repo, &["add", "-A"]);
        git(&self.repo, &["commit", "-q", "-m", "add a file"]);
    }

    /// A repo with config/app.yaml, the issue's kaizen.yaml (signal read from a metric file via
    /// `cat`) plus `extra_config`, and `rules` as rules.yaml.
    pub fn new(rules: &str, extra_config: &str) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("service");
        std::fs::create_dir_all(repo.join("config")).expect("mkdir");
        let metric = dir.path().join("latency.txt");
        std::fs::write(&metric, "100\n").expect("metric");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "user.name", "Test Human"]);
        git(&repo, &["config", "user.email", "human@example.invalid"]);
        std::fs::write(
            repo.join("config/app.yaml"),
            "# app config\ncache_mb: 128  # MiB\nworkers: 4\n",
        )
        .expect("write");
        let config = format!(
            r#"repo: .
mode: autonomous
state_dir: .kaizen
signals:
  latency_ms:
    unit: ms
    better: lower
    alert_above: 200
    source:
      command: "cat {}"
rules: rules.yaml
guards:
  daily_budget: 5
  max_concurrent: 2
  dedup_window: 2h
  freeze_after_rollbacks: 3
  freeze_for: 24h
  canary_required_from: medium
validate:
  settle: 5m
{extra_config}"#,
            metric.display()
        );
        std::fs::write(repo.join("kaizen.yaml"), config).expect("write");
        std::fs::write(repo.join("rules.yaml"), format!("rules:\n{rules}")).expect("write");
        std::fs::write(repo.join(".git/info/exclude"), "/.kaizen/\n").expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "initial service"]);
        Harness {
            dir,
            repo,
            metric,
            t0: "2026-03-02T08:00:00Z".parse().expect("time"),
        }
    }

    pub fn at(&self, minutes: i64) -> DateTime<Utc> {
        self.t0 + Duration::minutes(minutes)
    }

    pub fn kaizen_at(&self, minutes: i64, args: &[&str]) -> Output {
        self.kaizen_env_at(minutes, args, &[])
    }

    /// Like [`Harness::kaizen_at`] with extra environment variables (e.g. `KAIZEN_FAILPOINT`).
    pub fn kaizen_env_at(&self, minutes: i64, args: &[&str], env: &[(&str, &str)]) -> Output {
        let now = self.at(minutes).to_rfc3339();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaizen"));
        cmd.args(args)
            .arg("--now")
            .arg(&now)
            .current_dir(&self.repo)
            .env_remove("KAIZEN_NOW")
            .env_remove("KAIZEN_CONFIG")
            .env_remove("KAIZEN_FAILPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("kaizen runs")
    }

    /// The ledger file, opened directly (tests that inspect or tamper with it).
    pub fn ledger_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.repo.join(".kaizen/ledger.sqlite")).expect("ledger opens")
    }

    pub fn ok(&self, minutes: i64, args: &[&str]) -> String {
        let out = self.kaizen_at(minutes, args);
        assert!(
            out.status.success(),
            "kaizen {args:?} at +{minutes}m failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deterministic, noisy value around `level`: ±4% uniform noise from a hash of the minute, so
    /// consecutive minutes look independent.
    pub fn noisy(level: f64, i: i64) -> f64 {
        let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let x = (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        (level * (1.0 + 0.08 * x) * 10.0).round() / 10.0
    }

    /// Observes once a minute over [from, to) with `level(minute)`.
    pub fn observe_range(&self, from: i64, to: i64, level: impl Fn(i64) -> f64) {
        for m in from..to {
            std::fs::write(&self.metric, format!("{}\n", Self::noisy(level(m), m)))
                .expect("metric");
            self.ok(m, &["observe"]);
        }
    }

    /// Sets the metric for the next sample (e.g. before a `cycle`, which observes first).
    pub fn set_metric(&self, minute: i64, level: f64) {
        std::fs::write(&self.metric, format!("{}\n", Self::noisy(level, minute))).expect("metric");
    }

    pub fn interventions(&self, minutes: i64) -> Vec<serde_json::Value> {
        let out = self.ok(minutes, &["interventions", "--json"]);
        serde_json::from_str(&out).expect("interventions --json is a JSON array")
    }

    pub fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.repo.join(rel)).expect("read")
    }
}

/// Latency at 250 ms for `history` minutes (the validator needs history before the baseline to
/// rule out regression to the mean), the rule fires at +10m, post-window samples at `post` ms,
/// and the cycle at +45m judges. Returns the intervention's JSON after judging.
pub fn run_round(h: &Harness, offset: i64, post: f64) -> serde_json::Value {
    let history = if offset == 0 { 180 } else { 30 };
    h.observe_range(offset - history, offset + 10, |_| 250.0);
    h.set_metric(offset + 10, 250.0);
    let out = h.ok(offset + 10, &["cycle"]);
    assert!(out.contains("applied as commit"), "{out}");
    let list = h.interventions(offset + 10);
    let last = list.last().expect("an intervention").clone();
    assert_eq!(last["status"], "applied", "{last}");
    h.observe_range(offset + 11, offset + 45, |_| post);
    h.set_metric(offset + 45, post);
    h.ok(offset + 45, &["cycle"]);
    let list = h.interventions(offset + 45);
    find(&list, last["id"].as_str().expect("id")).clone()
}

pub fn find<'a>(list: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {list:?}"))
}
