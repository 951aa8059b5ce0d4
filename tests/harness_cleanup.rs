//! End-to-end tests of the harness's promise to leave nothing behind: after a normal run, after
//! SIGTERM, and after `kill -9` of the harness followed by `faultline cleanup`. They use the toy
//! Python register (`--db toy`) so they test the harness, not faultline-node.
//!
//! They need root, iproute2, iptables and python3; without them they say so and pass.

mod harness_common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness_common::*;

#[test]
fn a_normal_run_is_valid_and_leaves_nothing_behind() {
    if !environment_ok() {
        return;
    }
    let firewall_before = root_firewall();
    let store = temp_store("normal");
    let output = faultline()
        .args(toy_args(&store, 6))
        .args(["--nemesis", "partition,kill,pause,loss", "--seed", "11"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let run_dir = latest_run(&store);
    for file in ["test.json", "history.jsonl", "results.json", "faultline.log", "n1.log"] {
        assert!(run_dir.join(file).exists(), "{file} missing in {}", run_dir.display());
    }
    let run_id = run_id_of(&run_dir);
    assert_nothing_left(&run_id);
    assert_eq!(root_firewall(), firewall_before, "the root namespace's firewall changed");
    let history = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    assert!(history.contains("\"type\":\"fault\""), "no fault record in the history");
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn a_planted_bug_is_reported_invalid_with_exit_code_1() {
    if !environment_ok() {
        return;
    }
    let store = temp_store("bug");
    let output = faultline()
        .args(toy_args(&store, 6))
        .args([
            "--nemesis",
            "kill",
            "--nemesis-targets",
            // The toy serves only from n1, which it reports as its leader.
            "leader",
            "--bug",
            "lose-writes",
            "--seed",
            "5",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("INVALID"), "{stderr}");
    assert_nothing_left(&run_id_of(&latest_run(&store)));
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn sigterm_mid_run_heals_and_cleans_up() {
    if !environment_ok() {
        return;
    }
    let store = temp_store("sigterm");
    let mut child = faultline().args(toy_args(&store, 60)).spawn().unwrap();
    let run_id = wait_for_running_nodes(&store, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    signal(child.id() as i32, "TERM");
    let status = wait_child(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(4), "an interrupted run is not a verdict");
    assert_nothing_left(&run_id);
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn a_harness_panic_still_cleans_up() {
    if !environment_ok() {
        return;
    }
    let store = temp_store("panic");
    let started = Instant::now();
    let output =
        faultline().args(toy_args(&store, 60)).env("FAULTLINE_FAILPOINT", "panic-during-load").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failpoint panic-during-load"), "{stderr}");
    assert_ne!(output.status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(30), "the panic did not end the run promptly");
    assert_nothing_left(&run_id_of(&latest_run(&store)));
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn cleanup_removes_everything_a_killed_harness_left() {
    if !environment_ok() {
        return;
    }
    let firewall_before = root_firewall();
    let store = temp_store("kill9");
    let mut child = faultline().args(toy_args(&store, 60)).args(["--nemesis", "partition,pause"]).spawn().unwrap();
    let run_id = wait_for_running_nodes(&store, Duration::from_secs(20));
    // Let the nemesis install some rules and pause someone.
    std::thread::sleep(Duration::from_secs(3));
    signal(child.id() as i32, "KILL");
    let _ = wait_child(&mut child, Duration::from_secs(10));

    // The harness is gone but its cluster is not.
    let namespaces = run_namespaces(&run_id);
    assert_eq!(namespaces.len(), 6, "{namespaces:?}");
    let pids = processes_in(&namespaces);
    assert!(!pids.is_empty(), "the nodes should have outlived the harness");

    // An orphan: a faultline-named namespace with a process in it and no state file at all (as if
    // the harness died between `ip netns add` and saving its state).
    let orphan_run = format!("orph{}", std::process::id() % 100_000);
    let orphan = format!("fl-{orphan_run}-n1");
    assert!(Command::new("ip").args(["netns", "add", &orphan]).status().unwrap().success());
    let mut orphan_process = Command::new("ip").args(["netns", "exec", &orphan, "sleep", "120"]).spawn().unwrap();
    let orphan_pid = orphan_process.id() as i32;

    let started = Instant::now();
    let output = faultline().arg("cleanup").output().unwrap();
    assert!(
        output.status.success(),
        "cleanup failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("cleanup took {:?}", started.elapsed());
    assert_nothing_left(&run_id);
    for pid in pids {
        assert!(!process_alive(pid), "node process {pid} survived cleanup");
    }
    assert_nothing_left(&orphan_run);
    let _ = wait_child(&mut orphan_process, Duration::from_secs(5));
    assert!(!process_alive(orphan_pid), "the orphan namespace's process survived cleanup");
    assert_eq!(root_firewall(), firewall_before, "the root namespace's firewall changed");
    // A second cleanup has nothing to do and still succeeds.
    let again = faultline().arg("cleanup").output().unwrap();
    assert!(again.status.success());
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn not_root_or_bad_options_are_harness_failures_with_a_clear_message() {
    let output = faultline().args(["test", "--db", "nosuchdb", "--store", "/nonexistent"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("nosuchdb") || stderr.contains("needs root") || stderr.contains("not installed"),
        "{stderr}"
    );
    // As an unprivileged user (when this test can switch to one), the error says what is needed.
    if environment_ok() && Path::new("/usr/bin/setpriv").exists() {
        let output = Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_faultline")])
            .args(["test", "--db", "toy", "--store", "/nonexistent"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{stderr}");
        assert!(stderr.contains("needs root"), "{stderr}");
        assert!(!Path::new("/nonexistent").exists(), "nothing may be created before the checks");
    }
}
