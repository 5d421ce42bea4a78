//! Shared pieces of the issue-12 benchmarks: size knobs from the environment, a generated git
//! repository of N files and M commits (built with `git fast-import`, cached under `target/`),
//! and the figures file every benchmark appends to (read by `bench_report` to write the tables
//! and the SVG chart of BENCHMARKS.md).
#![allow(dead_code)] // each bench binary uses a part
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on broken fixtures

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A list of sizes from `var` (comma separated), or `default`.
pub fn sizes(var: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}: {s:?} is not a number"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

/// One number from `var`, or `default`.
pub fn knob(var: &str, default: u64) -> u64 {
    sizes(var, &[default])[0]
}

/// Where benchmarks keep generated fixtures and their figures (inside `target/`).
pub fn bench_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kaizen-bench");
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

/// The `kaizen` binary the benches run: `KAIZEN_BENCH_BIN` when set (e.g. a `cargo build
/// --release` binary, which has no test-only failpoints), else the one cargo built for them.
/// (This module is shared with kaizen-core's benches, which have no `kaizen` binary of their own.)
pub fn kaizen_bin() -> std::path::PathBuf {
    std::env::var_os("KAIZEN_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .or_else(|| option_env!("CARGO_BIN_EXE_kaizen").map(std::path::PathBuf::from))
        .expect("KAIZEN_BENCH_BIN names the kaizen binary to run")
}

/// Runs a command, panicking with its stderr on failure.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn git(repo: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo))
}

/// The kaizen config of the generated repository: one signal read by `echo 300` (always above
/// its alert threshold, so every cycle proposes), guards loose enough that a change every
/// 5 minutes is applied (budget, dedup window) and manual reverts do not keep the area frozen
/// (a freeze lasts a minute).
pub const KAIZEN_YAML: &str = r#"repo: .
mode: autonomous
state_dir: .kaizen
signals:
  latency_ms:
    unit: ms
    better: lower
    alert_above: 200
    source:
      command: "echo 300"
rules: rules.yaml
guards:
  daily_budget: 100000
  max_concurrent: 2
  dedup_window: 1m
  freeze_after_rollbacks: 3
  freeze_for: 1m
  canary_required_from: medium
validate:
  settle: 5m
"#;

pub const RULES_YAML: &str = r#"rules:
  - id: grow-cache
    area: cache
    when: { signal: latency_ms, above: 200 }
    change:
      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }
    predict: { signal: latency_ms, change: "-20%", within: 30m }
    risk: low
    confidence: 0.8
    rollback: revert
    because: "the working set no longer fits the cache; misses dominate latency"
"#;

pub const APP_YAML: &str = "# app config\ncache_mb: 128  # MiB\nworkers: 4\n";

fn data(out: &mut Vec<u8>, bytes: &[u8]) {
    writeln!(out, "data {}", bytes.len()).unwrap();
    out.extend_from_slice(bytes);
    out.push(b'\n');
}

/// A repository of `files` files (100 per directory, plus kaizen's config and the service's
/// `config/app.yaml`) and `commits` commits (the first adds everything, each later one edits
/// one file), checked out on `main`. Generated once with `git fast-import` and cached; callers
/// get a fresh copy in `into`.
pub fn fixture_repo(files: u64, commits: u64, into: &Path) -> PathBuf {
    let template = bench_dir().join(format!("repo-f{files}-c{commits}"));
    if !template.join(".git/kaizen-bench-complete").exists() {
        let _ = std::fs::remove_dir_all(&template);
        std::fs::create_dir_all(&template).expect("mkdir");
        git(&template, &["init", "-q", "-b", "main"]);
        git(&template, &["config", "user.name", "Bench Human"]);
        git(
            &template,
            &["config", "user.email", "human@example.invalid"],
        );
        let path_of = |i: u64| format!("src/d{:04}/f{:03}.txt", i / 100, i % 100);
        let mut s = Vec::with_capacity(usize::try_from(files * 200).unwrap_or(0));
        let t0 = 1_700_000_000u64;
        for c in 0..commits.max(1) {
            writeln!(s, "commit refs/heads/main").unwrap();
            writeln!(
                s,
                "committer Bench Human <human@example.invalid> {} +0000",
                t0 + c * 60
            )
            .unwrap();
            if c == 0 {
                data(&mut s, b"initial service\n");
                for i in 0..files {
                    writeln!(s, "M 100644 inline {}", path_of(i)).unwrap();
                    data(
                        &mut s,
                        format!("file {i}\nline two of file {i}\n").as_bytes(),
                    );
                }
                for (p, body) in [
                    ("config/app.yaml", APP_YAML),
                    ("kaizen.yaml", KAIZEN_YAML),
                    ("rules.yaml", RULES_YAML),
                ] {
                    writeln!(s, "M 100644 inline {p}").unwrap();
                    data(&mut s, body.as_bytes());
                }
            } else {
                let i = (c * 7919) % files.max(1);
                data(
                    &mut s,
                    format!("edit {} (commit {c})\n", path_of(i)).as_bytes(),
                );
                writeln!(s, "M 100644 inline {}", path_of(i)).unwrap();
                data(
                    &mut s,
                    format!("file {i}\nline two of file {i}\nedited in commit {c}\n").as_bytes(),
                );
            }
        }
        let mut child = Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(&template)
            .stdin(Stdio::piped())
            .spawn()
            .expect("git fast-import runs");
        child.stdin.take().unwrap().write_all(&s).unwrap();
        assert!(child.wait().unwrap().success(), "git fast-import failed");
        git(&template, &["reset", "-q", "--hard", "main"]);
        std::fs::write(template.join(".git/info/exclude"), "/.kaizen/\n").unwrap();
        std::fs::write(template.join(".git/kaizen-bench-complete"), "").unwrap();
    }
    std::fs::create_dir_all(into).expect("mkdir");
    let dst = into.join("repo");
    run(Command::new("cp").arg("-a").arg(&template).arg(&dst));
    dst
}

/// The median and the worst of `xs` (sorted in place).
pub fn median_worst(xs: &mut [Duration]) -> (Duration, Duration) {
    xs.sort();
    if xs.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    (xs[xs.len() / 2], xs[xs.len() - 1])
}

/// Appends one figure to `target/…/kaizen-bench/figures.tsv` (bench, name, size, value, unit),
/// the file `bench_report` turns into BENCHMARKS.md's tables and chart. A later run of the
/// same (bench, name, size) supersedes an earlier one.
pub fn figure(bench: &str, name: &str, size: u64, value: f64, unit: &str) {
    let line = format!("{bench}\t{name}\t{size}\t{value}\t{unit}\n");
    eprintln!("figure: {}", line.trim_end());
    // `cargo bench -- --test` (each benchmark run once, as a check) measures nothing.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let path = bench_dir().join("figures.tsv");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("figures file");
    f.write_all(line.as_bytes()).expect("figure written");
}

/// `figure` for a duration, in milliseconds.
pub fn figure_ms(bench: &str, name: &str, size: u64, d: Duration) {
    figure(bench, name, size, d.as_secs_f64() * 1e3, "ms");
}

/// CPU time (user + system) of this process's waited-for children so far (`getrusage`,
/// microseconds; the kernel's totals are exact, not sampled ticks): the cost of whole processes
/// that a busy machine does not inflate the way it inflates wall time.
pub fn children_cpu() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: `getrusage` only writes the struct it is given, for which all-zero bytes are a
    // valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time (user + system) of this process (all its threads) and its waited-for children so
/// far (`getrusage`): a resident engine's own cost plus the commands its sources run.
pub fn self_and_children_cpu() -> Duration {
    rusage(libc::RUSAGE_SELF) + rusage(libc::RUSAGE_CHILDREN)
}
