//! Shared fixtures for the adapter tests: the `git` CLI as the witness, a real repository (or a
//! bare remote with two clones), the one candidate most tests apply, and the small scripted
//! stages (a constant source, a proposer that proposes once, a validator that records).
#![allow(dead_code)] // each test crate uses a part
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kaizen_core::edit::Edit;
use kaizen_core::intervention::{Candidate, ExpectedChange, Origin, Outcome, Prediction, Risk};
use kaizen_core::observe::{Source, SourceError};
use kaizen_core::propose::{Proposals, ProposeContext, ProposeError, Proposer};
use kaizen_core::signal::Sample;
use kaizen_core::span::Span;
use kaizen_core::validate::{Look, ValidationRequest, Validator, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Runs `git args` in `dir`, asserting success; its stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Sets the committer identity of the repository at `dir`.
pub fn identity(dir: &Path, name: &str) {
    git(dir, &["config", "user.name", name]);
    git(dir, &["config", "user.email", "someone@example.invalid"]);
}

/// A fresh repository on `main` with `config/app.yaml` (`cache_mb: 128`) committed and
/// `.kaizen/` excluded.
pub fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    git(r, &["init", "-q", "-b", "main"]);
    identity(r, "T");
    std::fs::create_dir_all(r.join("config")).expect("mkdir");
    std::fs::write(r.join("config/app.yaml"), "cache_mb: 128\n").expect("write");
    std::fs::write(r.join(".git/info/exclude"), "/.kaizen/\n").expect("write");
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "init"]);
    dir
}

/// Commits reachable from HEAD in `root`.
pub fn commits(root: &Path) -> usize {
    git(root, &["rev-list", "--count", "HEAD"])
        .parse()
        .expect("count")
}

/// "grow cache": `config/app.yaml#cache_mb` → 256, predicting latency −20% within 30 min,
/// low risk, from `proposer` (rule `grow-cache`).
pub fn cache_candidate(proposer: &str) -> Candidate {
    Candidate {
        area: "cache".into(),
        kind: "config_set".into(),
        title: "grow cache".into(),
        hypothesis: "misses dominate".into(),
        change: vec![Edit::ConfigSet {
            file: "config/app.yaml".into(),
            key: "cache_mb".into(),
            value: serde_json::json!(256),
        }],
        prediction: Prediction {
            signal: "latency_ms".into(),
            change: ExpectedChange::Relative(-0.2),
            within: Span::minutes(30),
        },
        risk: Risk::Low,
        confidence: 0.8,
        rollback: Some("revert".into()),
        origin: Origin {
            proposer: proposer.into(),
            rule: Some("grow-cache".into()),
            ..Default::default()
        },
    }
}

/// A bare remote, kaizen's clone of it (`work`), and a human's clone (`human`); the remote's
/// `main` holds `config/app.yaml` (`cache_mb: 128`, `workers: 4`) and a README.
pub struct Remote {
    _dir: tempfile::TempDir,
    pub remote: PathBuf,
    pub work: PathBuf,
    pub human: PathBuf,
}

impl Remote {
    pub fn new() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("remote.git");
        let seed = dir.path().join("seed");
        std::fs::create_dir_all(&remote).unwrap();
        std::fs::create_dir_all(&seed).unwrap();
        git(&remote, &["init", "-q", "--bare", "-b", "main"]);
        git(&seed, &["init", "-q", "-b", "main"]);
        identity(&seed, "Seed");
        std::fs::create_dir_all(seed.join("config")).unwrap();
        std::fs::write(seed.join("config/app.yaml"), "cache_mb: 128\nworkers: 4\n").unwrap();
        std::fs::write(seed.join("README.md"), "service config\n").unwrap();
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", "init"]);
        git(
            &seed,
            &["remote", "add", "origin", remote.to_str().unwrap()],
        );
        git(&seed, &["push", "-q", "origin", "main"]);
        let clone = |name: &str, who: &str| {
            let p = dir.path().join(name);
            git(
                dir.path(),
                &["clone", "-q", remote.to_str().unwrap(), p.to_str().unwrap()],
            );
            identity(&p, who);
            p
        };
        let work = clone("work", "Operator");
        std::fs::write(work.join(".git/info/exclude"), "/.kaizen/\n").unwrap();
        let human = clone("human", "Human");
        Remote {
            _dir: dir,
            remote,
            work,
            human,
        }
    }

    /// `rev` resolved in the remote.
    pub fn remote_rev(&self, rev: &str) -> String {
        git(&self.remote, &["rev-parse", rev])
    }

    /// The human brings their clone up to the remote (and its branches).
    pub fn human_fetch(&self) {
        git(&self.human, &["fetch", "-q", "origin"]);
        git(&self.human, &["merge", "-q", "--ff-only", "origin/main"]);
    }

    /// A human commits `content` to `file` in their clone and pushes it; returns the sha.
    pub fn human_push(&self, file: &str, content: &str, message: &str) -> String {
        self.human_fetch();
        let path = self.human.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        git(&self.human, &["commit", "-q", "-am", message]);
        git(&self.human, &["push", "-q", "origin", "main"]);
        git(&self.human, &["rev-parse", "HEAD"])
    }
}

/// A source that reads `latency_ms` 250 at every tick.
pub struct Constant;

#[async_trait]
impl Source for Constant {
    fn name(&self) -> &str {
        "constant"
    }
    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        Ok(vec![Sample::new("latency_ms", now, 250.0)])
    }
}

/// Proposes one fixed candidate once (its name: `once`).
pub struct Once(pub Mutex<Option<Candidate>>);

impl Once {
    pub fn new(candidate: Candidate) -> Once {
        Once(Mutex::new(Some(candidate)))
    }
}

#[async_trait]
impl Proposer for Once {
    fn name(&self) -> &str {
        "once"
    }
    async fn propose(&self, _ctx: &ProposeContext) -> Result<Proposals, ProposeError> {
        Ok(Proposals {
            candidates: self.0.lock().unwrap().take().into_iter().collect(),
            rejected: vec![],
        })
    }
}

/// Every request's look and `applied_at` (the instant validation counts from).
pub type Looks = Arc<Mutex<Vec<(Look, DateTime<Utc>)>>>;

/// A validator that records each request and validates it.
#[derive(Clone, Default)]
pub struct Recorder(pub Looks);

impl Validator for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn interim_looks(&self) -> u32 {
        0
    }
    fn validate(&self, req: &ValidationRequest<'_>) -> Verdict {
        self.0.lock().unwrap().push((req.look, req.applied_at));
        Verdict {
            outcome: Outcome::Validated,
            summary: "recorded".into(),
            figures: Default::default(),
        }
    }
}
