//! Rules through the binary: a diagnose that refuses makes no candidate, one that confirms
//! records its facts, and every firing is greppable in the decision log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;

fn rule(diagnose: &str) -> String {
    RULE_GROW_CACHE
        .replace(
            "when: { signal: latency_ms, above: 200, for: 10m }",
            "when: { any: [ {signal: latency_ms, above: 200}, {signal: latency_ms, rising: 50%/h} ] }",
        )
        .replace(
            "    risk: low\n",
            &format!("    diagnose: '{diagnose}'\n    escalate: cache-oncall\n    risk: low\n"),
        )
}

#[test]
fn a_refusing_diagnose_blocks_the_candidate_and_a_confirming_one_records_facts() {
    let h = Harness::new(&rule("echo hit ratio is fine >&2; exit 1"), "");
    // Half an hour of 5-minute samples: the baseline the validator will judge against.
    for m in (-30..0).step_by(5) {
        h.set_metric(m, 250.0);
        h.ok(m, &["observe"]);
    }
    h.set_metric(0, 250.0);
    let out = h.kaizen_at(0, &["-v", "cycle"]);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("kaizen rule=grow-cache stage=trigger latency_ms above 200"),
        "{log}"
    );
    assert!(
        log.contains("kaizen rule=grow-cache stage=diagnose refused: exit 1: hit ratio is fine"),
        "{log}"
    );
    assert!(h.interventions(0).is_empty(), "no candidate was made");
    let events = h.ok(0, &["events", "--kind", "proposal_rejected"]);
    assert!(
        events.contains("did not confirm the problem: exit 1: hit ratio is fine"),
        "{events}"
    );

    std::fs::write(
        h.repo.join("rules.yaml"),
        format!(
            "rules:\n{}",
            rule(r#"echo "{\"hit_ratio\": 0.2, \"rule\": \"$KAIZEN_RULE\"}""#)
        ),
    )
    .unwrap();
    git(&h.repo, &["commit", "-qam", "confirming diagnose"]);
    h.set_metric(1, 250.0);
    let out = h.kaizen_at(1, &["-v", "cycle"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("kaizen rule=grow-cache stage=diagnose confirmed: exit 0"),
        "{log}"
    );
    assert!(
        log.contains("kaizen rule=grow-cache stage=propose candidate"),
        "{log}"
    );
    let list = h.interventions(1);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "applied", "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    let shown: serde_json::Value =
        serde_json::from_str(&h.ok(1, &["show", &id, "--json"])).unwrap();
    let text = shown.to_string();
    assert!(
        text.contains("\"hit_ratio\":0.2") && text.contains("\"rule\":\"grow-cache\""),
        "{text}"
    );
    assert!(text.contains("cache-oncall"), "{text}");
}
