//! Switchback confirmation through the `kaizen` binary: an area with `designs: { cache:
//! switchback }`, a cycle every minute, a metric that follows the committed config; `kaizen show`
//! (text and `--json`) prints the plan and every flip, and the flips are in git with their
//! trailers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

mod common;
use common::*;
use kaizen_core::failpoint;

/// What the service would show: 250 ms with the old cache, 125 ms with the new one.
fn level(h: &Harness) -> f64 {
    if h.file("config/app.yaml").contains("cache_mb: 256") {
        125.0
    } else {
        250.0
    }
}

#[test]
fn a_switchback_area_flips_in_blocks_and_show_prints_the_plan_and_every_flip() {
    let h = Harness::new(RULE_GROW_CACHE, "  designs: { cache: switchback }\n");
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

/// A kill at each switchback failpoint (a flip's intent recorded and no commit yet; the flip
/// committed and not yet in the ledger; the verdict stored and the intervention not yet
/// completed), then the same cron line again: the confirmation still ends validated with the
/// change on, every flip the ledger names is on the branch, and `kaizen check` finds nothing.
#[test]
fn a_kill_at_each_switchback_failpoint_is_recovered_by_the_next_cycle() {
    for point in failpoint::NAMES
        .iter()
        .filter(|n| n.starts_with("switchback."))
    {
        let h = Harness::new(RULE_GROW_CACHE, "  designs: { cache: switchback }\n");
        h.observe_range(-180, 10, |_| 250.0);
        let mut killed = false;
        let mut id = None;
        for m in 10..200 {
            h.set_metric(m, level(&h));
            if killed {
                h.ok(m, &["cycle"]);
            } else {
                let out = h.kaizen_env_at(m, &["cycle"], &[(failpoint::ENV, point)]);
                match out.status.code() {
                    Some(0) => {}
                    Some(c) if c == failpoint::EXIT_CODE => {
                        killed = true;
                        // Restarted: the same cron line again.
                        h.ok(m, &["cycle"]);
                    }
                    other => panic!(
                        "{point}: kaizen cycle at +{m}m exited {other:?}:\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                }
            }
            let list = h.interventions(m);
            if let Some(iv) = list.first() {
                id = Some(iv["id"].as_str().unwrap().to_string());
                if iv["status"] == "validated" || iv["status"] == "reverted" {
                    break;
                }
            }
        }
        assert!(killed, "{point} was never reached");
        let id = id.expect("an intervention");
        let list = h.interventions(300);
        assert_eq!(list.len(), 1, "{point}: {list:?}");
        let iv = find(&list, &id);
        assert_eq!(iv["status"], "validated", "{point}: {iv}");
        assert!(
            h.file("config/app.yaml").contains("cache_mb: 256"),
            "{point}"
        );
        h.ok(300, &["check"]);
        assert_eq!(git_text(&h.repo, &["status", "--porcelain"]), "", "{point}");
        assert_eq!(
            git_text(&h.repo, &["write-tree"]),
            git_text(&h.repo, &["rev-parse", "HEAD^{tree}"]),
            "{point}: the index is HEAD's tree"
        );
        let json: serde_json::Value =
            serde_json::from_str(&h.ok(300, &["show", &id, "--json"])).unwrap();
        let sb = &json["switchback"];
        assert_eq!(sb["state"], "finished", "{point}: {sb}");
        for sha in sb["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["flip_commit"].as_str())
        {
            let on_branch = git_text(&h.repo, &["branch", "--contains", sha]);
            assert!(
                on_branch.contains("main"),
                "{point}: flip {sha} not on main"
            );
        }
    }
}
