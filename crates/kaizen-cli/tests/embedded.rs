//! The embedding example (`examples/embedded`) as a real process on 127.0.0.1: a host service
//! that runs kaizen's runtime with its own source, next to the `kaizen` binary.
//!
//! The example is built by `cargo test -p kaizen-cli` (examples are test build targets).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

fn example_bin() -> PathBuf {
    let kaizen = PathBuf::from(env!("CARGO_BIN_EXE_kaizen"));
    let bin = kaizen.parent().unwrap().join("examples").join("embedded");
    assert!(
        bin.exists(),
        "{} missing: run `cargo test -p kaizen-cli` (or `cargo build -p kaizen-cli --examples`)",
        bin.display()
    );
    bin
}

struct Host {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Host {
    fn start(h: &Harness) -> Host {
        let mut child = Command::new(example_bin())
            .args([
                "--config",
                "kaizen.yaml",
                "--listen",
                "127.0.0.1:0",
                "--start",
            ])
            .arg(h.t0.to_rfc3339())
            .current_dir(&h.repo)
            .env("KAIZEN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the example runs");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut host = Host {
            child,
            addr: String::new(),
            lines,
            seen: Vec::new(),
        };
        let line = host.wait_for(|l| l.starts_with("host: listening on "));
        host.addr = line.trim_start_matches("host: listening on ").to_string();
        host
    }

    /// Reads the host's output until a line matches (the host is a real process: lines arrive
    /// when they arrive; a dead host ends the wait with its output so far).
    fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv() {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(_) => panic!("the host ended; its output:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(&self.addr).expect("connect");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
        let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, body.to_string())
    }

    fn ok(&self, method: &str, path: &str) -> String {
        let (code, body) = self.http(method, path);
        assert_eq!(code, 200, "{method} {path}: {body}");
        body
    }

    /// Moves the host's clock a minute at a time, sampling at each.
    fn observe_minutes(&self, n: usize) {
        for _ in 0..n {
            self.ok("POST", "/advance?minutes=1");
            self.ok("POST", "/observe");
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The harness repo with the signal fed by the host (no `source:`), the simple validator and a
/// schedule that never fires on its own during the test (the test drives every step).
fn host_repo() -> Harness {
    let h = Harness::new(
        RULE_GROW_CACHE,
        "schedule:\n  observe_every: 7d\n  cycle_every: 7d\n  learn_every: 7d\n",
    );
    h.edit_config(
        &format!(
            "    source:\n      command: \"cat {}\"\n",
            h.metric.display()
        ),
        "",
    );
    h.use_simple_validator();
    h
}

fn state(h: &Harness) -> (String, String, String) {
    (
        git_text(&h.repo, &["rev-list", "--count", "HEAD"]),
        h.ok(80, &["interventions", "--json"]),
        h.ok(80, &["events", "--since", "30d", "--json"]),
    )
}

#[test]
fn host_runtime_streams_the_loop_agrees_with_the_cli_and_shuts_down_mid_cycle() {
    let h = host_repo();
    let mut host = Host::start(&h);

    // Half an hour over the threshold (the baseline the validator needs), then a cycle: the
    // rule fires and its change is applied.
    host.observe_minutes(30);
    let report: serde_json::Value = serde_json::from_str(&host.ok("POST", "/cycle")).unwrap();
    assert_eq!(
        report["applied"],
        serde_json::json!(["K-000001"]),
        "{report}"
    );
    assert!(h.file("config/app.yaml").contains("cache_mb: 256"));
    // The window passes with the service faster; the cycle at its end validates.
    host.observe_minutes(35);
    let report: serde_json::Value = serde_json::from_str(&host.ok("POST", "/cycle")).unwrap();
    assert_eq!(
        report["validated"],
        serde_json::json!(["K-000001"]),
        "{report}"
    );

    // The host serves kaizen's /health and /metrics from the same runtime.
    let health: serde_json::Value = serde_json::from_str(&host.ok("GET", "/health")).unwrap();
    assert_eq!(health["status"], "running", "{health:#}");
    assert!(
        health["last_cycle"]["cycle"]["at"].is_string(),
        "{health:#}"
    );
    let metrics = host.ok("GET", "/metrics");
    assert!(
        metrics.contains("kaizen_interventions_validated_total 1"),
        "{metrics}"
    );

    // The subscriber saw the intervention's life, in order.
    for status in ["proposed", "applied", "validated"] {
        host.wait_for(|l| l.starts_with(&format!("event {status} K-000001 ")));
    }

    // The host's status() is what `kaizen status --json` reads from the ledger at that instant.
    let host_status: serde_json::Value = serde_json::from_str(&host.ok("GET", "/status")).unwrap();
    let at = host_status["at"].as_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(["status", "--json", "--now", &at])
        .current_dir(&h.repo)
        .env_remove("KAIZEN_NOW")
        .env_remove("KAIZEN_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(host_status, cli_status);
    assert_eq!(cli_status["signals"][0]["alerting"], false);
    assert_eq!(cli_status["budget_left"], 4);

    // A cron `kaizen cycle` meanwhile is refused by name and changes nothing.
    let before = state(&h);
    let cron = h.kaizen_at(66, &["cycle"]);
    assert_eq!(
        cron.status.code(),
        Some(75),
        "busy is exit 75, distinct from failure"
    );
    let stderr = String::from_utf8_lossy(&cron.stderr);
    assert!(
        stderr.contains(&format!("held by pid {} (embedded)", host.child.id())),
        "{stderr}"
    );
    assert_eq!(state(&h), before);
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");

    // Shutdown with a cycle in flight (its sampling waits for the host to stop): the cycle
    // finishes (the sample is a gap), the runtime stops cleanly, the lock is released.
    let (code, body) = host.http("POST", "/cycle-held");
    assert_eq!(code, 202, "{body}");
    Command::new("kill")
        .args(["-TERM", &host.child.id().to_string()])
        .status()
        .unwrap();
    host.wait_for(|l| l == "host: runtime shut down cleanly");
    let exit = host.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        host.seen
            .iter()
            .any(|l| l.starts_with("event sample_error")),
        "{:?}",
        host.seen
    );
    // Nothing half-done: the cron cycle now runs, the tree is clean, the history intact.
    h.ok(67, &["cycle"]);
    assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "");
    git(&h.repo, &["fsck", "--strict"]);
    let list = h.interventions(67);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "validated");
}
