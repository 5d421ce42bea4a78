//! Issue 10, "always on": `kaizen run` as a real process on 127.0.0.1 — `/health` and
//! `/metrics` (parsed as Prometheus text), SIGHUP reloads (a broken config keeps the old one, a
//! valid one picks up a new rule), SIGTERM stops cleanly, and systemd's READY / WATCHDOG
//! datagrams on a fake `NOTIFY_SOCKET` follow the loop's progress and stop while it is wedged.
//!
//! The schedule runs at 1 s / 2 s so a few cycles pass in seconds; every wait is bounded by a
//! generous deadline (a failure says what it was waiting for), never a speed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::git;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any wait may take before the test fails (a loaded 2-core CI machine).
const DEADLINE: Duration = Duration::from_secs(90);

const RULE: &str = r#"rules:
  - id: grow-cache
    area: cache
    when: { signal: latency_ms, above: 200 }
    change:
      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }
    predict: { signal: latency_ms, change: "-20%", within: 30m }
    risk: low
    confidence: 0.8
    rollback: revert
    because: "the working set no longer fits the cache"
"#;

struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
}

/// A service repo whose `latency_ms` reads a file (250 ms: alerting) through a command that
/// hangs while `WEDGE` exists (and says so in `WEDGED`), and whose `errors` source always fails.
fn repo(rules: &str) -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let repo = root.join("service");
    std::fs::create_dir_all(repo.join("config")).unwrap();
    std::fs::write(root.join("latency.txt"), "250\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "Test Human"]);
    git(&repo, &["config", "user.email", "human@example.invalid"]);
    std::fs::write(repo.join("config/app.yaml"), "cache_mb: 128\n").unwrap();
    std::fs::write(repo.join("kaizen.yaml"), config(&root)).unwrap();
    std::fs::write(repo.join("rules.yaml"), rules).unwrap();
    std::fs::write(repo.join(".git/info/exclude"), "/.kaizen/\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "initial service"]);
    Repo {
        _dir: dir,
        root,
        repo,
    }
}

fn config(root: &Path) -> String {
    let r = root.display();
    format!(
        r#"repo: .
mode: autonomous
state_dir: .kaizen
signals:
  latency_ms:
    unit: ms
    better: lower
    alert_above: 200
    source:
      timeout: 10m
      command: "if [ -f {r}/WEDGE ]; then touch {r}/WEDGED; while [ -f {r}/WEDGE ]; do sleep 0.1; done; fi; cat {r}/latency.txt"
  errors:
    unit: count
    better: lower
    alert_above: 5
    source:
      command: "echo 'upstream refused' >&2; exit 3"
rules: rules.yaml
validate:
  settle: 5m
schedule:
  observe_every: 1s
  cycle_every: 2s
  learn_every: 1h
"#
    )
}

/// A running `kaizen run`, its output collected by threads (so its pipes never fill).
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    addr: String,
}

fn collect(from: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Daemon {
    fn start(repo: &Repo, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaizen"));
        cmd.args(["-v", "run", "--listen", "127.0.0.1:0"])
            .current_dir(&repo.repo)
            .env_remove("KAIZEN_NOW")
            .env_remove("KAIZEN_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("kaizen run starts");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = collect(child.stdout.take().unwrap());
        let mut d = Daemon {
            child,
            stderr,
            stdout,
            addr: String::new(),
        };
        let line = d.wait_stderr("serving /health and /metrics on http://");
        d.addr = line.rsplit("http://").next().unwrap().trim().to_string();
        d
    }

    fn logs(&self) -> String {
        format!(
            "stderr:\n{}\nstdout:\n{}",
            self.stderr.lock().unwrap().join("\n"),
            self.stdout.lock().unwrap().join("\n")
        )
    }

    /// Waits for a stderr line containing `text` (after `skip` earlier lines); returns it.
    fn wait_stderr_after(&mut self, skip: usize, text: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .skip(skip)
                .find(|l| l.contains(text))
            {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "kaizen run exited ({status}) before {text:?}\n{}",
                    self.logs()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {text:?} within {DEADLINE:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_stderr(&mut self, text: &str) -> String {
        self.wait_stderr_after(0, text)
    }

    fn stderr_len(&self) -> usize {
        self.stderr.lock().unwrap().len()
    }

    fn get(&self, path: &str) -> (u16, String, String) {
        http_get(&self.addr, path)
    }

    fn health(&self) -> serde_json::Value {
        let (code, _, body) = self.get("/health");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Polls `/health` until `ok` holds; returns that document.
    fn wait_health(
        &mut self,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let h = self.health();
            if ok(&h) {
                return h;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "kaizen run exited ({status}) waiting for {what}\n{}",
                    self.logs()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "/health never showed {what}: {h:#}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM, then the exit status and the logs.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        self.signal("-TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads drain.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.logs());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "kaizen run did not stop on SIGTERM\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET: (status, content type, body).
fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (code, ctype, body.to_string())
}

fn kaizen(repo: &Repo, args: &[&str]) -> std::process::Output {
    common::kaizen_in(&repo.repo, args)
}

// ----- a Prometheus text-format parser (exposition format 0.0.4) -------------------------------

#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    /// `name{k="v",…}` (labels sorted) → value.
    samples: BTreeMap<String, f64>,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The labels after a `{` up to the closing `}`, and the text after it.
fn parse_labels<'a>(s: &'a str, line: &str) -> (Vec<String>, &'a str) {
    let mut labels = Vec::new();
    let mut i = 0;
    loop {
        if s[i..].starts_with('}') {
            return (labels, &s[i + 1..]);
        }
        let eq = s[i..]
            .find('=')
            .unwrap_or_else(|| panic!("label without =: {line:?}"))
            + i;
        let name = &s[i..eq];
        assert!(valid_name(name), "bad label name {name:?} in {line:?}");
        assert!(
            s[eq + 1..].starts_with('"'),
            "unquoted label value: {line:?}"
        );
        let mut j = eq + 2;
        let mut value = String::new();
        loop {
            let c = s[j..]
                .chars()
                .next()
                .unwrap_or_else(|| panic!("unterminated: {line:?}"));
            j += c.len_utf8();
            match c {
                '\\' => {
                    let e = s[j..].chars().next();
                    j += 1;
                    match e {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push(format!("{name}=\"{value}\""));
        match s[j..].chars().next() {
            Some(',') => i = j + 1,
            Some('}') => return (labels, &s[j + 1..]),
            other => panic!("after a label {other:?}: {line:?}"),
        }
    }
}

/// Parses the text, failing on anything the format does not allow: a sample before its TYPE,
/// a bad metric or label name, an unterminated or badly escaped label value, a bad number.
fn parse_prometheus(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(valid_name(name), "bad name in {line:?}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type in {line:?}"
                    );
                    assert!(
                        out.types.insert(name.into(), kind.into()).is_none(),
                        "TYPE twice: {line:?}"
                    );
                }
                (Some("HELP"), Some(name), _) => assert!(valid_name(name), "{line:?}"),
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let name = &line[..name_end];
        assert!(valid_name(name), "bad metric name {name:?}");
        assert!(
            out.types.contains_key(name),
            "sample before its TYPE: {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let (l, after) = parse_labels(r, line);
            labels = l;
            rest = after;
        }
        let value = rest.trim();
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("bad value {v:?} in {line:?}: {e}")),
        };
        labels.sort();
        let key = if labels.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{}}}", labels.join(","))
        };
        assert!(
            out.samples.insert(key, v).is_none(),
            "duplicate sample {line:?}"
        );
    }
    out
}

// ----- the tests --------------------------------------------------------------------------------

#[test]
fn run_serves_health_and_metrics_then_stops_cleanly_on_sigterm() {
    let r = repo("rules: []\n");
    let mut d = Daemon::start(&r, &[]);
    let h = d.wait_health("a finished cycle", |h| {
        h["last_cycle"]["cycle"]["result"] == "ok" && !h["signals"]["latency_ms"]["value"].is_null()
    });
    for key in [
        "status",
        "why",
        "last_cycle",
        "signals",
        "open_interventions",
        "frozen_areas",
        "recoveries_24h",
        "failures_24h",
        "invariant_violations_open",
        "escalations_open",
    ] {
        assert!(h.get(key).is_some(), "/health lacks {key}: {h:#}");
    }
    // The failing source makes kaizen degraded, and says why with the source's last error.
    assert_eq!(h["status"], "degraded", "{h:#}");
    let errors = &h["signals"]["errors"];
    assert!(errors["value"].is_null(), "a gap is never a value: {h:#}");
    let last_error = errors["stale"]["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("exit status: 3"), "{h:#}");
    let latency = &h["signals"]["latency_ms"];
    assert_eq!(latency["value"], 250.0, "{h:#}");
    assert_eq!(latency["alerting"], true, "{h:#}");
    assert!(latency["stale"].is_null(), "{h:#}");
    assert!(h["last_cycle"]["cycle"]["at"].is_string(), "{h:#}");
    assert!(h["failures_24h"].as_u64().unwrap() >= 1, "{h:#}");
    assert_eq!(h["open_interventions"], 0);
    assert_eq!(h["escalations_open"], 0);
    assert_eq!(h["invariant_violations_open"], 0);
    assert!(
        h["why"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("signal errors is stale")),
        "{h:#}"
    );

    let (code, ctype, text) = d.get("/metrics");
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let m = parse_prometheus(&text);
    for (name, kind) in &m.types {
        assert!(name.starts_with("kaizen_"), "{name}");
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter without _total: {name}");
        }
    }
    for family in [
        "kaizen_build_info",
        "kaizen_interventions_applied_total",
        "kaizen_interventions_validated_total",
        "kaizen_interventions_reverted_total",
        "kaizen_guard_refusals_total",
        "kaizen_sample_gaps_total",
        "kaizen_escalations_total",
        "kaizen_open_interventions",
        "kaizen_frozen_areas",
        "kaizen_paused",
        "kaizen_last_cycle_timestamp_seconds",
    ] {
        assert!(m.types.contains_key(family), "no {family} in\n{text}");
    }
    assert_eq!(m.types["kaizen_interventions_applied_total"], "counter");
    assert_eq!(m.types["kaizen_paused"], "gauge");
    assert_eq!(
        m.samples[&format!(
            "kaizen_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
    assert!(
        m.samples["kaizen_sample_gaps_total{signal=\"errors\"}"] >= 1.0,
        "{text}"
    );
    assert_eq!(
        m.samples["kaizen_signal_value{signal=\"latency_ms\"}"],
        250.0
    );
    assert_eq!(m.samples["kaizen_paused"], 0.0);
    assert_eq!(m.samples["kaizen_interventions_applied_total"], 0.0);
    let cycle_at = m.samples["kaizen_last_cycle_timestamp_seconds{stage=\"cycle\"}"];
    assert!(cycle_at > 1.7e9, "a Unix time in seconds: {cycle_at}");
    assert!(
        !text.contains("K-0"),
        "an intervention id as a label:\n{text}"
    );

    // The same snapshot from the ledger, by a separate process while the daemon holds the lock.
    let out = kaizen(&r, &["health", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["status"], "degraded", "{cli:#}");
    assert!(
        cli["signals"]["errors"]["stale"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("exit status: 3"),
        "{cli:#}"
    );
    // `kaizen status` warns about the stale signal, with the last error.
    let out = kaizen(&r, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: signal errors is stale") && text.contains("exit status: 3"),
        "{text}"
    );
    assert!(!text.contains("signal latency_ms is stale"), "{text}");

    // -v: one heartbeat line per cycle.
    d.wait_stderr("kaizen heartbeat: cycle ok");

    let (status, logs) = d.terminate();
    assert!(
        status.success(),
        "SIGTERM is a clean stop: {status}\n{logs}"
    );
    assert!(logs.contains("kaizen: stopped"), "{logs}");
    // The lock is released: a command that needs it runs at once.
    let out = kaizen(&r, &["observe", "--wait", "0s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sighup_keeps_the_old_config_when_broken_and_picks_up_a_new_rule_when_valid() {
    let r = repo("rules: []\n");
    let mut d = Daemon::start(&r, &[]);
    d.wait_health("a finished cycle", |h| {
        h["last_cycle"]["cycle"]["result"] == "ok"
    });
    let good = std::fs::read_to_string(r.repo.join("kaizen.yaml")).unwrap();

    // A broken config: reported (log line, event, /health) and the daemon goes on with the old.
    std::fs::write(
        r.repo.join("kaizen.yaml"),
        good.replace("settle: 5m", "settle: five minutes"),
    )
    .unwrap();
    let seen = d.stderr_len();
    d.signal("-HUP");
    let line = d.wait_stderr_after(seen, "reload refused");
    assert!(line.contains("validate.settle"), "names the field: {line}");
    let refused_at = d.health()["at"].as_str().unwrap().to_string();
    let h = d.wait_health("the refused reload and a later cycle", |h| {
        h["last_cycle"]["reload"]["result"] == "failed"
            && h["last_cycle"]["cycle"]["at"].as_str().unwrap_or_default() > refused_at.as_str()
    });
    assert_eq!(h["status"], "degraded", "{h:#}");

    // A valid config with a new rule: reloaded, and the running loop acts on the rule.
    std::fs::write(r.repo.join("kaizen.yaml"), &good).unwrap();
    // (The CLI reads the config too, so the event is looked up once the file is good again.)
    let out = kaizen(&r, &["events", "--kind", "reload_failed"]);
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(events.contains("validate.settle"), "{events}");
    std::fs::write(r.repo.join("rules.yaml"), RULE).unwrap();
    git(&r.repo, &["commit", "-q", "-am", "add the grow-cache rule"]);
    let seen = d.stderr_len();
    d.signal("-HUP");
    d.wait_stderr_after(seen, "kaizen: reloaded");
    d.wait_health("the reload taking effect", |h| {
        h["last_cycle"]["reload"]["result"] == "ok"
    });
    let start = Instant::now();
    loop {
        let out = kaizen(&r, &["events", "--kind", "waiting_for_baseline"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("grow-cache") {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the reloaded rule never fired: {text}\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = kaizen(&r, &["events", "--kind", "config_reloaded"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded"));

    let (status, logs) = d.terminate();
    assert!(status.success(), "{status}\n{logs}");
}

/// Receives datagrams until one contains `text` (those before it are returned too).
fn recv_until(sock: &UnixDatagram, text: &str, d: &Daemon) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.contains(text);
                got.push(msg);
                if done {
                    return got;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no {text:?} on NOTIFY_SOCKET (got {got:?})\n{}",
            d.logs()
        );
    }
}

fn drain(sock: &UnixDatagram) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

#[test]
fn systemd_ready_and_watchdog_follow_the_loop_and_stop_while_it_is_wedged() {
    let r = repo("rules: []\n");
    let path = r.root.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_nonblocking(true).unwrap();
    // Pings every 0.5 s while the loop moves.
    let mut d = Daemon::start(
        &r,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let first = recv_until(&sock, "READY=1", &d);
    assert!(
        first.iter().all(|m| !m.contains("WATCHDOG")),
        "READY comes first: {first:?}"
    );
    recv_until(&sock, "WATCHDOG=1", &d);
    recv_until(&sock, "WATCHDOG=1", &d);

    // Wedge the loop: the next sample hangs until WEDGE is removed.
    std::fs::write(r.root.join("WEDGE"), "").unwrap();
    let start = Instant::now();
    while !r.root.join("WEDGED").exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "the source never hung\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A ping already earned before the step hung may still go out within one period.
    std::thread::sleep(Duration::from_millis(1200));
    drain(&sock);
    std::thread::sleep(Duration::from_millis(3000));
    let during = drain(&sock);
    assert!(
        during.iter().all(|m| !m.contains("WATCHDOG=1")),
        "pings while the loop is wedged: {during:?}"
    );
    // /health still answers (from the last snapshot) while the loop is stuck.
    assert_eq!(d.get("/health").0, 200);

    // Unwedged: the loop moves again, and so do the pings.
    std::fs::remove_file(r.root.join("WEDGE")).unwrap();
    recv_until(&sock, "WATCHDOG=1", &d);

    // SIGHUP says RELOADING then READY; SIGTERM says STOPPING.
    let seen = d.stderr_len();
    d.signal("-HUP");
    recv_until(&sock, "RELOADING=1", &d);
    recv_until(&sock, "READY=1", &d);
    d.wait_stderr_after(seen, "kaizen: reloaded");
    let (status, logs) = d.terminate();
    assert!(status.success(), "{status}\n{logs}");
    let rest = drain(&sock);
    assert!(rest.iter().any(|m| m.contains("STOPPING=1")), "{rest:?}");
}
