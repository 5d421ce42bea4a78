//! `CommandSource` with real shell commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use kaizen_adapters::source::{CommandSource, build_sources};
use kaizen_core::config::Config;
use kaizen_core::observe::Source;
use std::path::Path;
use std::time::{Duration, Instant};

fn source(dir: &Path, cmd: &str) -> CommandSource {
    CommandSource::new("latency_ms", cmd, dir, Duration::from_secs(5))
}

async fn value(dir: &Path, cmd: &str) -> Result<f64, String> {
    match source(dir, cmd).observe(Utc::now()).await {
        Ok(samples) => {
            assert_eq!(samples.len(), 1);
            assert_eq!(samples[0].signal, "latency_ms");
            Ok(samples[0].value)
        }
        Err(e) => {
            assert_eq!(e.source_name, "latency_ms");
            Err(e.message)
        }
    }
}

#[tokio::test]
async fn one_number_on_stdout_is_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let s = source(dir.path(), "echo 42").observe(now).await.unwrap();
    assert_eq!(s[0].at, now);
    assert_eq!(s[0].value, 42.0);
    assert_eq!(value(dir.path(), "printf '3.5'").await.unwrap(), 3.5);
    assert_eq!(
        value(dir.path(), "printf '  -7e-1 \\n\\n'").await.unwrap(),
        -0.7
    );
    // Runs in the given directory.
    std::fs::write(dir.path().join("value.txt"), "251\n").unwrap();
    assert_eq!(value(dir.path(), "cat value.txt").await.unwrap(), 251.0);
    // Noise on stderr does not matter when the exit is clean.
    assert_eq!(
        value(dir.path(), "echo warming up >&2; echo 9")
            .await
            .unwrap(),
        9.0
    );
}

#[tokio::test]
async fn anything_but_one_finite_number_is_an_error_never_zero() {
    let dir = tempfile::tempdir().unwrap();
    for (cmd, says) in [
        ("true", "printed nothing"),
        ("echo", "printed nothing"),
        ("echo 1 2", "exactly one number"),
        ("echo fast", "not a number"),
        ("echo nan", "not a"),
        ("echo inf", "not a finite number"),
        ("echo 12ms", "not a number"),
        ("yes 1 | head -c 100000", "more than 64 KiB"),
    ] {
        let e = value(dir.path(), cmd).await.unwrap_err();
        assert!(e.contains(says), "{cmd}: {e}");
    }
}

#[tokio::test]
async fn failures_report_status_and_a_bounded_stderr_excerpt() {
    let dir = tempfile::tempdir().unwrap();
    let e = value(
        dir.path(),
        "echo 5; echo 'metrics endpoint down' >&2; exit 3",
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("exit status: 3") && e.contains("metrics endpoint down"),
        "{e}"
    );
    let e = value(
        dir.path(),
        "yes 'a long complaint' | head -c 200000 >&2; exit 1",
    )
    .await
    .unwrap_err();
    assert!(e.chars().count() < 600, "{} chars", e.len());
    let e = value(&dir.path().join("missing"), "echo 1")
        .await
        .unwrap_err();
    assert!(e.contains("could not start"), "{e}");
}

#[tokio::test]
async fn timeouts_kill_the_command_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let s = CommandSource::new(
        "x",
        "sleep 30 & echo $! > bg.pid; wait",
        dir.path(),
        Duration::from_millis(400),
    );
    let started = Instant::now();
    let e = s.observe(Utc::now()).await.unwrap_err();
    assert!(e.message.contains("timed out after 400ms"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = std::fs::read_to_string(dir.path().join("bg.pid")).unwrap();
    let stat = Path::new("/proc").join(pid.trim()).join("stat");
    // Give the kernel a moment to deliver the signal.
    for _ in 0..50 {
        match std::fs::read_to_string(&stat) {
            Err(_) => return,
            Ok(s) if s.split_whitespace().nth(2) == Some("Z") => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("the background child {} survived the timeout", pid.trim());
}

#[test]
fn sources_are_built_for_signals_with_a_source() {
    let text = r#"
signals:
  latency_ms:
    better: lower
    source:
      command: "echo 1"
  error_rate:
    better: lower
    source:
      http: http://127.0.0.1:1/health
      field: errors.rate
  rps:
    better: higher
    source:
      prometheus: http://127.0.0.1:1
      query: sum(rate(http_requests_total[1m]))
  fed_by_host:
    better: lower
"#;
    let config = Config::parse(text, Path::new("/srv/app/kaizen.yaml")).unwrap();
    let sources = build_sources(&config);
    let names: Vec<&str> = sources.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["error_rate", "latency_ms", "rps"]);
}

#[tokio::test]
async fn command_sources_run_in_the_config_repo() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("v"), "17\n").unwrap();
    let text = "repo: .\nsignals:\n  v:\n    better: lower\n    source:\n      command: cat v\n";
    let config = Config::parse(text, &dir.path().join("kaizen.yaml")).unwrap();
    let sources = build_sources(&config);
    assert_eq!(sources[0].observe(Utc::now()).await.unwrap()[0].value, 17.0);
}
