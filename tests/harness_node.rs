//! End-to-end torture tests against faultline-node: 20-40 s of load each. The correct node
//! must be valid; planted bugs must be caught (invalid), with nemeses chosen to expose them.
//! After each run, nothing of it may be left.
//!
//! They need root, iptables, and the faultline-node binary next to faultline (`cargo build
//! --workspace` or `cargo test --workspace` builds it). FAULTLINE_E2E_SECONDS changes the load time.

mod harness_common;

use std::path::{Path, PathBuf};

use harness_common::*;

fn node_binary() -> Option<PathBuf> {
    let faultline = PathBuf::from(env!("CARGO_BIN_EXE_faultline"));
    let node = faultline.parent()?.join("faultline-node");
    node.is_file().then_some(node)
}

/// Seconds of load: FAULTLINE_E2E_SECONDS, or `default`.
fn seconds(default: u64) -> String {
    std::env::var("FAULTLINE_E2E_SECONDS").unwrap_or_else(|_| default.to_string())
}

/// Runs `faultline test` against faultline-node for `load_seconds` (unless overridden by the
/// environment); returns (exit code, stderr, store). The store is kept for post-mortems; a test
/// removes it once its assertions passed.
fn run_node_test(name: &str, load_seconds: u64, extra: &[&str]) -> Option<(i32, String, PathBuf)> {
    if !environment_ok() {
        return None;
    }
    let Some(node) = node_binary() else {
        eprintln!("skipping: faultline-node is not built next to faultline (cargo build --workspace)");
        return None;
    };
    let store = temp_store(name);
    let output = faultline()
        .args([
            "test",
            "--name",
            name,
            "--node-bin",
            node.to_str().unwrap(),
            "--time-limit",
            &seconds(load_seconds),
            "--recovery",
            "3",
            "--store",
            store.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let run_id = run_id_of(&latest_run(&store));
    assert_nothing_left(&run_id);
    let code = output.status.code().unwrap_or(-1);
    Some((code, stderr, store))
}

/// The fault records of a run's history.
fn fault_records(run_dir: &Path) -> Vec<serde_json::Value> {
    let history = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    history
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["type"] == "fault")
        .collect()
}

#[test]
fn the_correct_node_survives_partitions_kills_and_pauses() {
    let extra = ["--nemesis", "partition,kill,pause,isolated-pause", "--nemesis-interval", "3", "--seed", "1"];
    let Some((code, stderr, store)) = run_node_test("node-valid", 20, &extra) else {
        return;
    };
    assert_eq!(code, 0, "{stderr}");
    let _ = std::fs::remove_dir_all(store);
}

/// With CheckQuorum a plainly isolated leader steps down about when the majority elects a new one,
/// and its clients are stuck on writes meanwhile, so a plain partition rarely shows the bug. An
/// isolated *and paused* leader resumes with frozen timers and serves stale reads until it notices;
/// 20 workers put 4 on each node, so some reads wait at the paused leader for its resume.
#[test]
fn stale_read_is_caught_by_an_isolated_pause_of_the_leader() {
    let extra = [
        "--bug",
        "stale-read",
        "--nemesis",
        "isolated-pause",
        "--nemesis-interval",
        "2",
        "--concurrency",
        "20",
        "--seed",
        "4",
        "--stop-on-invalid",
    ];
    let Some((code, stderr, store)) = run_node_test("node-stale-read", 40, &extra) else {
        return;
    };
    assert_eq!(code, 1, "{stderr}");
    // Found while the run went on, the load ended early, and the end-of-run check agrees (and
    // run_node_test checked that nothing of the run is left behind).
    let run_dir = latest_run(&store);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).unwrap()).unwrap();
    let found_at = results["online"]["invalid_at_s"].as_f64().unwrap_or_else(|| panic!("no online finding: {stderr}"));
    assert_eq!(results["online"]["stopped_early"], true, "{stderr}");
    assert!(found_at < 40.0, "found at {found_at} s");
    assert_eq!(results["checker"]["verdict"], "invalid", "the end-of-run check must agree");
    let _ = std::fs::remove_dir_all(store);
}

/// A leader that acknowledges before commit and is then cut off (and killed) loses acknowledged
/// writes when the majority elects a new leader.
#[test]
fn ack_before_commit_is_caught_by_isolating_and_killing_the_leader() {
    let extra = [
        "--bug",
        "ack-before-commit",
        "--nemesis",
        "partition,kill",
        "--partition-shapes",
        "isolate-leader",
        "--nemesis-targets",
        "leader",
        "--nemesis-interval",
        "3",
        "--seed",
        "3",
    ];
    let Some((code, stderr, store)) = run_node_test("node-ack-before-commit", 20, &extra) else {
        return;
    };
    assert_eq!(code, 1, "{stderr}");
    let _ = std::fs::remove_dir_all(store);
}

/// docs/replication.md: primary-copy, the baseline, acknowledges writes its backups never got and
/// fails over without a quorum, so partitions and kills lose acknowledged appends. The mode is
/// stored in test.json (so --replay and torture's scenarios carry it).
#[test]
fn primary_copy_loses_acknowledged_appends_under_partitions_and_kills() {
    let extra = [
        "--replication",
        "primary-copy",
        "--nodes",
        "3",
        "--workload",
        "append",
        "--nemesis",
        "partition,kill",
        "--seed",
        "12",
        "--stop-on-invalid",
    ];
    let Some((code, stderr, store)) = run_node_test("node-primary-copy", 30, &extra) else {
        return;
    };
    assert_eq!(code, 1, "{stderr}");
    let test_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest_run(&store).join("test.json")).unwrap()).unwrap();
    assert_eq!(test_json["options"]["replication"], "primary-copy");
    let _ = std::fs::remove_dir_all(store);
}

/// The figure-8 nemesis (Raft's Figure 8 as partitions timed by watching terms) and crash-restarts
/// against a correct 3-node cluster: valid, the replicas converge, no node dies on its own, and
/// the history records each figure with what its steps came to.
#[test]
fn the_correct_node_survives_figure_8_and_crashes_and_its_replicas_converge() {
    let extra = [
        "--nodes",
        "3",
        "--workload",
        "append",
        "--nemesis",
        "figure-8,crash",
        "--nemesis-interval",
        "3",
        "--seed",
        "2",
    ];
    let Some((code, stderr, store)) = run_node_test("node-figure-8", 15, &extra) else {
        return;
    };
    assert_eq!(code, 0, "{stderr}");
    let run = latest_run(&store);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let checks = results["workload_checks"].as_array().unwrap();
    let verdict_of =
        |name: &str| checks.iter().find(|c| c["checker"] == name).map(|c| c["verdict"].as_str().unwrap().to_string());
    assert_eq!(verdict_of("convergence").as_deref(), Some("valid"), "{results}");
    assert_eq!(verdict_of("node-crashes").as_deref(), Some("valid"), "{results}");
    let faults = fault_records(&run);
    let figure_stops: Vec<&serde_json::Value> =
        faults.iter().filter(|f| f["f"] == "figure-8" && f["phase"] == "stop").collect();
    assert!(!figure_stops.is_empty(), "no figure-8 ran: {faults:?}");
    assert!(figure_stops.iter().all(|f| f["detail"]["formed"].is_boolean()), "{figure_stops:?}");
    assert!(faults.iter().any(|f| f["f"] == "crash"), "no crash fired: {faults:?}");
    let _ = std::fs::remove_dir_all(store);
}

/// The restart-voter script against a correct 5-node cluster: the restarted voter remembers its
/// vote, so no script ever forms two leaders of one term, and the run is valid.
#[test]
fn a_correct_restarted_voter_remembers_its_vote() {
    let extra = ["--workload", "append", "--nemesis", "restart-voter", "--nemesis-interval", "5", "--seed", "3"];
    let Some((code, stderr, store)) = run_node_test("node-restart-voter", 15, &extra) else {
        return;
    };
    assert_eq!(code, 0, "{stderr}");
    let stops: Vec<serde_json::Value> = fault_records(&latest_run(&store))
        .into_iter()
        .filter(|record| record["f"] == "restart-voter" && record["phase"] == "stop")
        .collect();
    assert!(!stops.is_empty(), "no restart-voter script ran");
    assert!(stops.iter().all(|s| s["detail"]["formed"] == false), "two leaders of one term: {stops:?}");
    let _ = std::fs::remove_dir_all(store);
}
