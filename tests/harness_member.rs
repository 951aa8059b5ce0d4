//! End-to-end test of the `member` nemesis (issue 15) against faultline-node: nodes removed from
//! the configuration and added back, and leadership transferred, through the node's admin
//! commands while clients run; the correct node stays valid and every removed node is a voter
//! again by the end.
//!
//! It needs root, iproute2, iptables, python3 and the faultline-node binary next to faultline;
//! without them it says so and passes.

mod harness_common;

use std::path::PathBuf;

use harness_common::*;

#[test]
fn the_correct_node_survives_membership_changes_and_gets_every_node_back() {
    if !environment_ok() {
        return;
    }
    let node = PathBuf::from(env!("CARGO_BIN_EXE_faultline")).parent().unwrap().join("faultline-node");
    if !node.is_file() {
        eprintln!("skipping: faultline-node is not built next to faultline (cargo build --workspace)");
        return;
    }
    let store = temp_store("member");
    let seconds = std::env::var("FAULTLINE_E2E_SECONDS").unwrap_or_else(|_| "20".to_string());
    let output = faultline()
        .args(["test", "--node-bin", node.to_str().unwrap(), "--nodes", "5", "--nemesis", "member"])
        .args(["--nemesis-targets", "one,minority,leader", "--nemesis-interval", "2", "--recovery", "3"])
        .args(["--seed", "1", "--time-limit", &seconds, "--store", store.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let run_dir = latest_run(&store);
    assert_nothing_left(&run_id_of(&run_dir));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let stops: Vec<serde_json::Value> = std::fs::read_to_string(run_dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["f"] == "member" && r["phase"] == "stop")
        .collect();
    let removals: Vec<&serde_json::Value> = stops.iter().filter(|r| r["detail"]["action"] == "remove").collect();
    assert!(!removals.is_empty(), "no node was removed: {stops:?}");
    for removal in &removals {
        let steps = removal["detail"]["steps"].as_array().unwrap();
        assert_eq!(steps[0], serde_json::json!(["remove_node", "accepted"]), "{removal}");
        assert_eq!(removal["detail"]["restored"], serde_json::json!(true), "{removal}");
    }
    let _ = std::fs::remove_dir_all(&store);
}
