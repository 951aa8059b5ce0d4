//! Every workload end to end against faultline-node (`faultline test --workload W`): the correct
//! node is valid under partitions, kills and pauses, and a leader that acknowledges before commit
//! loses acknowledged appends and adds, which the `append` and `set` checks must catch. Each run's
//! report is rendered and nothing of it is left behind.
//!
//! The six runs are started together the first time any of these tests asks for one (each run
//! has its own namespaces and subnet), so the file costs about one run's time (~35 s) however many
//! test threads there are. They need root, iptables, and faultline-node next to faultline (`cargo
//! build --workspace`). FAULTLINE_E2E_SECONDS changes the load time.

mod harness_common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use harness_common::*;
use serde_json::Value;

const VALID_LOAD_SECONDS: u64 = 15;
const BUG_LOAD_SECONDS: u64 = 20;

/// The runs of this file: (name, workload, load seconds, extra arguments).
fn planned_runs() -> Vec<(&'static str, &'static str, u64, Vec<&'static str>)> {
    let valid = vec!["--nemesis", "partition,kill,pause", "--nemesis-interval", "3", "--seed", "1"];
    // As in harness_node's ack-before-commit test: cut the leader off and kill it, so that what it
    // acknowledged without a quorum is overwritten by the majority's new leader.
    let ack_before_commit = vec![
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
    vec![
        ("wl-register", "register", VALID_LOAD_SECONDS, valid.clone()),
        ("wl-cas-register", "cas-register", VALID_LOAD_SECONDS, valid.clone()),
        ("wl-append", "append", VALID_LOAD_SECONDS, valid.clone()),
        ("wl-set", "set", VALID_LOAD_SECONDS, valid),
        ("wl-append-ack-before-commit", "append", BUG_LOAD_SECONDS, ack_before_commit.clone()),
        ("wl-set-ack-before-commit", "set", BUG_LOAD_SECONDS, ack_before_commit),
    ]
}

struct Run {
    store: PathBuf,
    child: Option<Child>,
}

/// The runs, all started on first use; None when the environment cannot run them.
fn runs() -> Option<&'static Mutex<HashMap<&'static str, Run>>> {
    static RUNS: OnceLock<Option<Mutex<HashMap<&'static str, Run>>>> = OnceLock::new();
    RUNS.get_or_init(|| {
        if !environment_ok() {
            return None;
        }
        let node = Path::new(env!("CARGO_BIN_EXE_faultline")).parent()?.join("faultline-node");
        if !node.is_file() {
            eprintln!("skipping: faultline-node is not built next to faultline (cargo build --workspace)");
            return None;
        }
        // Every run starts, even when a filter selects only some of these tests: a run whose test
        // is not selected finishes and cleans up on its own (its output goes to files, not to
        // pipes that die with this process) and leaves only its store in the temp directory.
        let mut runs = HashMap::new();
        for (name, workload, load_seconds, extra) in planned_runs() {
            let store = temp_store(name);
            let seconds = std::env::var("FAULTLINE_E2E_SECONDS").unwrap_or_else(|_| load_seconds.to_string());
            let child = faultline()
                .args(["test", "--name", name, "--workload", workload, "--node-bin", node.to_str().unwrap()])
                .args(["--time-limit", &seconds, "--recovery", "3", "--store", store.to_str().unwrap()])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(store.join("stderr.txt")).unwrap())
                .spawn()
                .unwrap();
            runs.insert(name, Run { store, child: Some(child) });
        }
        Some(Mutex::new(runs))
    })
    .as_ref()
}

/// Waits for the named run (bounded); returns (exit code, stderr, run directory, results.json).
/// Nothing of the run may be left behind.
fn finished_run(name: &str) -> Option<(i32, String, PathBuf, Value)> {
    let runs = runs()?;
    let (store, child) = {
        let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
        let run = runs.get_mut(name).expect("a planned run");
        (run.store.clone(), run.child.take().expect("each run is waited for by one test"))
    };
    let code = wait_bounded(child, Duration::from_secs(240));
    let stderr = std::fs::read_to_string(store.join("stderr.txt")).unwrap_or_default();
    let run_dir = latest_run(&store);
    assert_nothing_left(&run_id_of(&run_dir));
    let results: Value = std::fs::read_to_string(run_dir.join("results.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("no results.json in {}: {stderr}", run_dir.display()));
    assert!(run_dir.join("index.html").is_file(), "the report was not rendered: {stderr}");
    Some((code, stderr, run_dir, results))
}

/// The child's exit code; past `timeout` it gets SIGTERM (faultline heals and cleans up on it)
/// and the test fails.
fn wait_bounded(mut child: Child, timeout: Duration) -> i32 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() >= deadline {
            signal(child.id() as i32, "TERM");
            let _ = wait_child(&mut child, Duration::from_secs(60));
            panic!("faultline did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remove(run_dir: &Path) {
    // store/<name>/<timestamp> -> the store.
    if let Some(store) = run_dir.parent().and_then(Path::parent) {
        let _ = std::fs::remove_dir_all(store);
    }
}

/// A valid, non-vacuous run (exit 0) of `workload`, with its direct checkers' reports.
fn assert_valid(name: &str, workload: &str, checkers: &[&str]) {
    let Some((code, stderr, run_dir, results)) = finished_run(name) else {
        return;
    };
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(results["workload"], workload);
    let test_json: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("test.json")).unwrap()).unwrap();
    assert_eq!(test_json["options"]["workload"], workload);
    let checks = results["workload_checks"].as_array().expect("workload_checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["checker"].as_str()).collect();
    // The workload's own checkers, then the cluster's (src/convergence.rs).
    let expected: Vec<&str> = checkers.iter().copied().chain(["node-crashes", "convergence"]).collect();
    assert_eq!(names, expected);
    for check in checks {
        assert_eq!(check["verdict"], "valid", "{check}");
        assert!(stderr.contains(check["summary"].as_str().unwrap()), "the summary line is printed: {stderr}");
    }
    remove(&run_dir);
}

/// An invalid run (exit 1) whose workload checker found lost acknowledged writes.
fn assert_lost_writes_caught(name: &str, checker: &str, lost: &str) {
    let Some((code, stderr, run_dir, results)) = finished_run(name) else {
        return;
    };
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(results["verdict"], "invalid");
    let check = &results["workload_checks"][0];
    assert_eq!(check["checker"], checker);
    let lost_count = check["details"].pointer(lost).and_then(Value::as_u64).unwrap_or(0);
    eprintln!(
        "{name}: {checker} {} ({lost_count} lost), the {} model {}",
        check["verdict"], results["checker"]["model"], results["checker"]["verdict"]
    );
    assert!(
        check["verdict"] == "invalid" && lost_count > 0 || results["checker"]["verdict"] == "invalid",
        "neither the {checker} checker nor the model flagged the bug: {check}"
    );
    remove(&run_dir);
}

#[test]
fn the_register_workload_is_valid_against_the_correct_node() {
    assert_valid("wl-register", "register", &[]);
}

#[test]
fn the_cas_register_workload_is_valid_against_the_correct_node() {
    assert_valid("wl-cas-register", "cas-register", &[]);
}

#[test]
fn the_append_workload_is_valid_against_the_correct_node() {
    assert_valid("wl-append", "append", &["append"]);
}

#[test]
fn the_set_workload_is_valid_against_the_correct_node() {
    assert_valid("wl-set", "set", &["set-full"]);
}

#[test]
fn ack_before_commit_loses_acknowledged_appends() {
    assert_lost_writes_caught("wl-append-ack-before-commit", "append", "/counts/lost");
}

#[test]
fn ack_before_commit_loses_acknowledged_adds() {
    assert_lost_writes_caught("wl-set-ack-before-commit", "set-full", "/lost_count");
}
