//! Switchback confirmation through the `kaizen` binary: an area with `designs: { cache:
//! switchback }`, a cycle every minute, a metric that follows the committed config; `kaizen show`
//! (text and `--json`) prints the plan and every flip, and the flips are in git with their
//! trailers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;

#[test]
fn a_switchback_area_flips_in_blocks_and_show_prints_the_plan_and_every_flip() {
    let h = Harness::new(RULE_GROW_CACHE, "  designs: { cache: switchback }\n");
    // What the service would show: 250 ms with the old cache, 125 ms with the new one.
    let level = |h: &Harness| {
        if h.file("config/app.yaml").contains("cache_mb: 256") {
            125.0
        } else {
            250.0
        }
    };
    h.observe_range(-180, 10, |_| 250.0);
    let mut id = None;
    for m in 10..200 {
        h.set_metric(m, level(&h));
        h.ok(m, &["cycle"]);
        let list = h.interventions(m);
        if let Some(iv) = list.first() {
            id = Some(iv["id"].as_str().unwrap().to_string());
            if iv["status"] == "validated" || iv["status"] == "reverted" {
                break;
            }
        }
    }
    let id = id.expect("an intervention");
    let list = h.interventions(300);
    let iv = find(&list, &id);
    assert_eq!(iv["status"], "validated", "{iv}");
    assert!(h.file("config/app.yaml").contains("cache_mb: 256"));

    let json: serde_json::Value =
        serde_json::from_str(&h.ok(300, &["show", &id, "--json"])).unwrap();
    let sb = &json["switchback"];
    assert_eq!(sb["state"], "finished", "{sb}");
    assert_eq!(sb["plan"]["plan"]["blocks"], 8, "{sb}");
    let blocks = sb["blocks"].as_array().unwrap();
    let flips: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b["flip_commit"].as_str())
        .collect();
    assert!(!flips.is_empty(), "{sb}");
    for sha in &flips {
        let msg = git_text(&h.repo, &["log", "-1", "--format=%B", sha]);
        assert!(msg.contains(&format!("Kaizen-Switchback: {id}/")), "{msg}");
        assert!(msg.contains(&format!("Kaizen-Intervention: {id}")), "{msg}");
    }
    let text = h.ok(300, &["show", &id]);
    assert!(text.contains("switchback: finished"), "{text}");
    assert!(text.contains("plan        8 blocks of"), "{text}");
    assert!(text.contains("block 1"), "{text}");
    assert!(
        text.contains(&format!("flip {}", &flips[0][..10])),
        "{text}"
    );
    assert!(text.contains("switchback permutation test over"), "{text}");
}
