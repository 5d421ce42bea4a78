//! `well_formed`: the candidate is complete and sane enough to judge at all.

use super::text::verdict;
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use crate::intervention::Candidate;

/// The most edits one intervention may make.
pub const MAX_EDITS: usize = 50;

/// Blocks a candidate whose confidence is not a finite number in [0, 1], that has no edits or more
/// than [`MAX_EDITS`], an edit whose payload is oversize ([`crate::edit::Edit::check_payload`]),
/// or whose title or area is blank. Every problem is listed.
#[derive(Debug, Clone, Copy, Default)]
pub struct WellFormed;

impl Guard for WellFormed {
    fn name(&self) -> &'static str {
        "well_formed"
    }

    fn check(
        &self,
        candidate: &Candidate,
        _ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let mut problems = Vec::new();
        let c = candidate.confidence;
        if !c.is_finite() || !(0.0..=1.0).contains(&c) {
            problems.push(format!("confidence {c} is not a probability in [0, 1]"));
        }
        let n = candidate.change.len();
        if n == 0 {
            problems.push("change has no edits".to_string());
        } else if n > MAX_EDITS {
            problems.push(format!(
                "change has {n} edits, more than the {MAX_EDITS} allowed"
            ));
        }
        for (i, e) in candidate.change.iter().enumerate() {
            if let Err(err) = e.check_payload() {
                problems.push(format!("edit {}: {err}", i + 1));
            }
        }
        if candidate.title.trim().is_empty() {
            problems.push("title is empty".to_string());
        }
        if candidate.area.trim().is_empty() {
            problems.push("area is empty".to_string());
        }
        if problems.is_empty() {
            Ok(verdict(
                self.name(),
                Decision::Pass,
                format!("{n} edit(s) in area `{}`, confidence {c}", candidate.area),
            ))
        } else {
            Ok(verdict(self.name(), Decision::Block, problems.join("; ")))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{GuardPolicy, LedgerView};
    use super::*;

    fn run(c: &Candidate) -> GuardVerdict {
        let view = LedgerView::default();
        let policy = GuardPolicy::default();
        WellFormed.check(c, &ctx_at(&view, &policy, t0())).unwrap()
    }

    #[test]
    fn passes_a_normal_candidate_and_the_bounds() {
        let v = run(&cand("cache"));
        assert_eq!(v.decision, Decision::Pass, "{}", v.reason);
        assert_eq!(v.reason, "1 edit(s) in area `cache`, confidence 0.7");
        for conf in [0.0, 1.0] {
            let c = Candidate {
                confidence: conf,
                ..cand("cache")
            };
            assert_eq!(run(&c).decision, Decision::Pass);
        }
        let fifty = (0..MAX_EDITS)
            .map(|i| set("config/app.yaml", &format!("k{i}")))
            .collect();
        assert_eq!(run(&cand_with("cache", fifty)).decision, Decision::Pass);
    }

    #[test]
    fn blocks_bad_confidence() {
        for conf in [f64::NAN, f64::INFINITY, -0.01, 1.01] {
            let c = Candidate {
                confidence: conf,
                ..cand("cache")
            };
            let v = run(&c);
            assert_eq!(v.decision, Decision::Block, "{conf}");
            assert!(v.reason.contains("confidence"), "{}", v.reason);
        }
    }

    #[test]
    fn blocks_empty_or_oversized_change_and_blank_names_listing_all() {
        assert!(run(&cand_with("cache", vec![])).reason.contains("no edits"));
        let many = (0..=MAX_EDITS)
            .map(|i| set("config/app.yaml", &format!("k{i}")))
            .collect();
        let v = run(&cand_with("cache", many));
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason.contains("51 edits, more than the 50"),
            "{}",
            v.reason
        );
        let c = Candidate {
            title: "  ".into(),
            area: String::new(),
            ..cand("x")
        };
        let v = run(&c);
        assert_eq!(v.decision, Decision::Block);
        assert_eq!(v.reason, "title is empty; area is empty");
    }

    #[test]
    fn blocks_an_oversize_payload() {
        let big = crate::edit::Edit::FileWrite {
            file: "config/blob.txt".into(),
            content: "x".repeat(crate::edit::MAX_FILE_BYTES + 1),
        };
        let v = run(&cand_with("cache", vec![big]));
        assert_eq!(v.decision, Decision::Block);
        assert!(v.reason.contains("edit 1: config/blob.txt"), "{}", v.reason);
        assert!(v.reason.len() < 200, "{}", v.reason);
    }
}
