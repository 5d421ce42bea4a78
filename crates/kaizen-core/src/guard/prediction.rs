//! `prediction`: a change is only applied if its prediction can be judged — it must name a
//! configured signal.

use super::text::verdict;
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use crate::intervention::Candidate;

/// The guard's stable name.
pub const NAME: &str = "prediction";

/// Blocks a candidate whose prediction names a signal not in
/// [`signals`](super::GuardPolicy::signals): nothing could ever validate it, so it would stay
/// applied unjudged. The engine always runs it last in its chain, whatever chain it was given.
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictionOnKnownSignal;

impl Guard for PredictionOnKnownSignal {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let p = &candidate.prediction;
        Ok(if ctx.policy.signals.contains(&p.signal) {
            verdict(
                NAME,
                Decision::Pass,
                format!("predicts {p} on a configured signal"),
            )
        } else {
            verdict(
                NAME,
                Decision::Block,
                format!(
                    "prediction on unknown signal {:?}: it could never be validated",
                    p.signal
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::testutil::{cand, ctx_at, t0};
    use crate::guard::{GuardPolicy, LedgerView};

    #[test]
    fn only_a_configured_signal_can_be_predicted() {
        let view = LedgerView::default();
        let mut policy = GuardPolicy::default();
        let c = cand("cache");
        let v = PredictionOnKnownSignal
            .check(&c, &ctx_at(&view, &policy, t0()))
            .unwrap();
        assert_eq!(v.decision, Decision::Block);
        assert!(v.reason.contains("\"latency_ms\""), "{}", v.reason);
        policy.signals = vec!["latency_ms".into()];
        let v = PredictionOnKnownSignal
            .check(&c, &ctx_at(&view, &policy, t0()))
            .unwrap();
        assert_eq!(v.decision, Decision::Pass, "{}", v.reason);
    }
}
