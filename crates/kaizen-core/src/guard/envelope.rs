//! `envelope`: a change stays inside the declared tunables' bounds, steps and invariants.
//!
//! The decision itself is [`Envelope::check`](crate::tunables::Envelope::check); this guard feeds
//! it the repository's current files (only those that hold declared knobs — paths the operator
//! wrote, not the candidate) and turns its findings into a verdict. Anything it cannot read or
//! compute blocks.

use super::text::verdict;
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use crate::intervention::Candidate;
use crate::tunables::Envelope;
use std::sync::Arc;

/// Refuses changes outside the envelope: out of bounds, not an allowed value, a step above
/// `max_step`, a broken invariant, a knob's area or risk understated, or (with
/// `tunables.strict: true`) an undeclared key.
#[derive(Debug, Clone)]
pub struct EnvelopeGuard {
    envelope: Arc<Envelope>,
}

impl EnvelopeGuard {
    /// A guard enforcing `envelope`.
    pub fn new(envelope: Arc<Envelope>) -> Self {
        Self { envelope }
    }
}

impl Guard for EnvelopeGuard {
    fn name(&self) -> &'static str {
        "envelope"
    }

    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let read = |file: &str| -> Result<Option<String>, String> {
            match std::fs::read_to_string(ctx.repo_root.join(file)) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read {file}: {e}")),
            }
        };
        let report = self
            .envelope
            .check(&candidate.change, &candidate.area, candidate.risk, read)
            .map_err(|message| GuardError {
                guard: self.name().to_string(),
                message,
            })?;
        if !report.problems.is_empty() {
            return Ok(verdict(
                self.name(),
                Decision::Block,
                report.problems.join("; "),
            ));
        }
        let reason = if report.changed.is_empty() {
            "changes no declared tunable".to_string()
        } else {
            format!(
                "inside the envelope: {}{}",
                report.changed.join(", "),
                match report.invariants_checked {
                    0 => String::new(),
                    n => format!(" ({n} invariant(s) hold)"),
                }
            )
        };
        Ok(verdict(self.name(), Decision::Pass, reason))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{GuardPolicy, LedgerView};
    use super::*;
    use crate::tunables::{Knob, KnobType, Step};

    #[test]
    fn reads_the_repository_and_fails_closed_on_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(
            dir.path().join("config/app.yaml"),
            "cache:\n  size_mb: 100\n",
        )
        .unwrap();
        let mut env = Envelope::default();
        env.knobs.insert(
            "cache".into(),
            Knob {
                name: "cache".into(),
                file: "config/app.yaml".into(),
                key: "cache.size_mb".into(),
                ty: KnobType::Int,
                min: Some((16.0, "16".into())),
                max: Some((1024.0, "1024".into())),
                allowed: vec![],
                max_step: Some((Step::Factor(1.2), "1.2x".into())),
                area: None,
                risk: None,
                description: None,
            },
        );
        let guard = EnvelopeGuard::new(Arc::new(env));
        let view = LedgerView::default();
        let policy = GuardPolicy::default();
        let ctx = GuardContext {
            view: &view,
            policy: &policy,
            now: t0(),
            repo_root: dir.path(),
        };
        // testutil's candidate sets cache.size_mb to 128: a step of 1.28x.
        let v = guard.check(&cand("cache"), &ctx).unwrap();
        assert_eq!(v.decision, Decision::Block);
        assert_eq!(
            v.reason,
            "knob `cache`: 100 → 128 is a step of 1.28x, above max_step 1.2x"
        );
        std::fs::write(
            dir.path().join("config/app.yaml"),
            "cache:\n  size_mb: 120\n",
        )
        .unwrap();
        let v = guard.check(&cand("cache"), &ctx).unwrap();
        assert_eq!(v.decision, Decision::Pass, "{v:?}");
        assert_eq!(v.reason, "inside the envelope: cache 120 → 128");
        // A directory where the file should be: unreadable, so the guard errors (= blocks).
        std::fs::remove_file(dir.path().join("config/app.yaml")).unwrap();
        std::fs::create_dir_all(dir.path().join("config/app.yaml")).unwrap();
        assert!(guard.check(&cand("cache"), &ctx).is_err());
    }
}
