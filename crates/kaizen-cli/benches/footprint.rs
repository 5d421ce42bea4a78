//! Benchmark 5 of issue 12: embedded footprint. The example host service
//! (`examples/embedded`, release build) runs for a while on the wall clock with kaizen's
//! runtime embedded at the default cadence (observe every minute, cycle every 5 minutes), and
//! again with `--without-kaizen`; the difference in RSS (at the end and peak) and in CPU time
//! (user + system, from `/proc`) is kaizen's. Then the same with 1,000 signals reported by the
//! host and declared in kaizen.yaml.
//!
//! Not a criterion benchmark: it measures a resident process over minutes, not an operation
//! (criterion's repeated timing has nothing to time here).
//!
//! `cargo build --release -p kaizen-cli --example embedded && cargo bench -p kaizen-cli --bench
//! footprint`. Knobs: `KAIZEN_BENCH_FOOTPRINT_SECS` (per run, default 120; the is 600),
//! `KAIZEN_BENCH_FOOTPRINT_SIGNALS` (comma separated, default `1,1000`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on broken fixtures

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn host_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_kaizen"))
        .parent()
        .unwrap()
        .join("examples")
        .join("embedded");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p kaizen-cli --example embedded` first",
        bin.display()
    );
    bin
}

fn repo(dir: &Path, signals: u64) -> PathBuf {
    let repo = dir.join(format!("host-{signals}"));
    std::fs::create_dir_all(repo.join("config")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "Bench Human"]);
    git(&repo, &["config", "user.email", "human@example.invalid"]);
    std::fs::write(repo.join("config/app.yaml"), APP_YAML).unwrap();
    let mut cfg = String::from(
        "repo: .\nmode: autonomous\nstate_dir: .kaizen\nsignals:\n  latency_ms: { unit: ms, better: lower, alert_above: 200 }\n",
    );
    for i in 0..signals.saturating_sub(1) {
        cfg.push_str(&format!(
            "  extra_{i:04}: {{ unit: ms, better: lower, alert_above: 1000 }}\n"
        ));
    }
    cfg.push_str("rules: rules.yaml\nvalidate:\n  settle: 5m\n");
    std::fs::write(repo.join("kaizen.yaml"), cfg).unwrap();
    std::fs::write(
        repo.join("rules.yaml"),
        RULES_YAML.replace("above: 200 }", "above: 200, for: 10m }"),
    )
    .unwrap();
    std::fs::write(repo.join(".git/info/exclude"), "/.kaizen/\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "host service"]);
    repo
}

/// (user+system CPU seconds, RSS MB now, peak RSS MB) of a running `pid`.
fn usage(pid: u32, tick: f64) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu = (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (cpu, kb("VmRSS:"), kb("VmHWM:"))
}

fn run(repo: &Path, signals: u64, with: bool, secs: u64, tick: f64) -> (f64, f64, f64, f64) {
    let mut cmd = Command::new(host_binary());
    cmd.arg("--config")
        .arg(repo.join("kaizen.yaml"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .current_dir(repo)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if with {
        cmd.arg("--extra-signals").arg((signals - 1).to_string());
    } else {
        cmd.arg("--without-kaizen");
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("host: listening") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "host exited early");
    }
    // Keep reading its event lines so its stdout never blocks.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu, rss, peak) = usage(child.id(), tick);
    let wall = start.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    (cpu, wall, rss, peak)
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        // `cargo bench -- --test`: building it is the check; a footprint needs minutes.
        return;
    }
    let secs = knob("KAIZEN_BENCH_FOOTPRINT_SECS", 120);
    let tick: f64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(100.0);
    let dir = tempfile::tempdir().unwrap();
    for signals in sizes("KAIZEN_BENCH_FOOTPRINT_SIGNALS", &[1, 1000]) {
        let r = repo(dir.path(), signals.max(1));
        let (c0, w0, r0, p0) = run(&r, signals.max(1), false, secs, tick);
        let (c1, w1, r1, p1) = run(&r, signals.max(1), true, secs, tick);
        let pct = |c: f64, w: f64| 100.0 * c / w.max(1e-9);
        figure("footprint", "host_alone_rss", signals, r0, "MB");
        figure("footprint", "host_alone_peak_rss", signals, p0, "MB");
        figure(
            "footprint",
            "host_alone_cpu",
            signals,
            pct(c0, w0),
            "% of a core",
        );
        figure("footprint", "with_kaizen_rss", signals, r1, "MB");
        figure("footprint", "with_kaizen_peak_rss", signals, p1, "MB");
        figure(
            "footprint",
            "with_kaizen_cpu",
            signals,
            pct(c1, w1),
            "% of a core",
        );
        figure("footprint", "extra_rss", signals, r1 - r0, "MB");
        figure("footprint", "extra_peak_rss", signals, p1 - p0, "MB");
        figure(
            "footprint",
            "extra_cpu",
            signals,
            pct(c1, w1) - pct(c0, w0),
            "% of a core",
        );
        figure("footprint", "run_seconds", signals, w1, "s");
    }
}
