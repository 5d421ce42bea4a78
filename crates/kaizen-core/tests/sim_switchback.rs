//! The `switchback-confirms` scenario through the engine (honest validator, default guards, the
//! direct applier): before/after stays inconclusive through every extension on a trending,
//! autocorrelated signal whose rule fired in a spike; the switchback then validates the real fix
//! and leaves it on. Checked in the ledger, not only by the scenario's expectations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kaizen_core::intervention::{InterventionId, Outcome, Status};
use kaizen_core::ledger::{Ledger, SwitchbackState, SwitchbackTrigger};
use kaizen_core::sim::{self, DirectApplier, Scenario, SimOptions};
use kaizen_core::validate::HonestValidator;
use std::path::Path;

#[tokio::test]
async fn before_after_cannot_tell_and_the_switchback_validates_the_fix() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/scenarios/switchback-confirms.yaml");
    let scenario = Scenario::load(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = sim::prepare(&scenario, dir.path(), false).unwrap();
    let ledger_path = dir.path().join("ledger.sqlite");
    let r = sim::run_scenario_with(
        &scenario,
        dir.path(),
        Box::new(DirectApplier::new(&layout.repo)),
        Box::new(HonestValidator::default()),
        SimOptions {
            ledger: Some(Ledger::open(&ledger_path).unwrap()),
            ..SimOptions::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    println!("{}", r.render());
    let ledger = Ledger::open(&ledger_path).unwrap();
    let id = InterventionId(1);
    for e in ledger.events_for(id).unwrap() {
        println!("{} {} {}", e.at, e.kind, e.event);
    }
    assert!(r.passed(), "{}", r.render());
    // The before/after looks were inconclusive, for the figures (not missing data).
    let looks: Vec<_> = ledger
        .events_for(id)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            kaizen_core::event::EngineEvent::Verdict { look, verdict, .. } => Some((look, verdict)),
            _ => None,
        })
        .collect();
    let before_after: Vec<_> = looks
        .iter()
        .filter(|(l, _)| *l != kaizen_core::validate::Look::Switchback)
        .collect();
    assert!(!before_after.is_empty());
    assert!(
        before_after
            .iter()
            .all(|(_, v)| v.outcome == Outcome::Inconclusive && !v.figures.missing_data),
        "{before_after:?}"
    );
    let sb = ledger.switchback(id).unwrap().expect("a switchback");
    assert_eq!(sb.state, SwitchbackState::Finished);
    assert_eq!(
        sb.plan.as_ref().unwrap().trigger,
        SwitchbackTrigger::Inconclusive
    );
    let iv = ledger.get(id).unwrap();
    assert_eq!(iv.status, Status::Validated, "{}", iv.reason);
    let verdict = ledger.verdict(id).unwrap().unwrap();
    assert_eq!(verdict.figures.method, "switchback_permutation");
    // The change stays on.
    assert!(
        std::fs::read_to_string(layout.repo.join("config/app.yaml"))
            .unwrap()
            .contains("cache_mb: 256")
    );
}
