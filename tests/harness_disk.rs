//! End-to-end tests of the disk faults (`--nemesis lose-unfsynced`, `torn-write`; issue 15): the
//! planted bug `no-fsync` is found by a power loss and the correct node is not; a run with faultfs
//! mounts leaves no mount behind, and neither does a harness killed with SIGKILL once `faultline
//! cleanup` ran.
//!
//! They need root, iproute2, iptables, python3 and FUSE (/dev/fuse, fusermount3); the
//! faultline-node tests need the node binary next to faultline. Without them they say so and pass.

mod harness_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness_common::*;

fn fuse_ok() -> bool {
    let ok = Path::new("/dev/fuse").exists() && Path::new("/usr/bin/fusermount3").exists();
    if !ok {
        eprintln!("skipping: needs /dev/fuse and fusermount3 (Debian fuse3)");
    }
    ok && environment_ok()
}

/// faultfs mounts in /proc/mounts under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("faultfs "))
        .filter_map(|line| line.split(' ').nth(1).map(str::to_string))
        .filter(|target| Path::new(target).starts_with(&dir))
        .collect()
}

fn node_binary() -> Option<PathBuf> {
    let node = PathBuf::from(env!("CARGO_BIN_EXE_faultline")).parent()?.join("faultline-node");
    if !node.is_file() {
        eprintln!("skipping: faultline-node is not built next to faultline (cargo build --workspace)");
    }
    node.is_file().then_some(node)
}

/// The fault records of `f` in a run's history.
fn fault_records(run_dir: &Path, f: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["type"] == "fault" && record["f"] == f)
        .collect()
}

/// A 5-node faultline-node run under power losses of all or a majority of the nodes; returns
/// (exit code, stderr, run directory).
fn node_power_loss_run(name: &str, bug: Option<&str>) -> Option<(i32, String, PathBuf, PathBuf)> {
    if !fuse_ok() {
        return None;
    }
    let node = node_binary()?;
    let store = temp_store(name);
    let seconds = std::env::var("FAULTLINE_E2E_SECONDS").unwrap_or_else(|_| "15".to_string());
    let mut command = faultline();
    command.args([
        "test",
        "--node-bin",
        node.to_str().unwrap(),
        "--nodes",
        "5",
        "--nemesis",
        "lose-unfsynced",
        "--nemesis-targets",
        "all,majority",
        "--nemesis-interval",
        "3",
        "--time-limit",
        &seconds,
        "--recovery",
        "3",
        "--seed",
        "1",
        "--store",
        store.to_str().unwrap(),
    ]);
    if let Some(bug) = bug {
        command.args(["--bug", bug]);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let run_dir = latest_run(&store);
    assert_nothing_left(&run_id_of(&run_dir));
    assert!(mounts_under(&run_dir).is_empty(), "faultfs left mounted: {:?}", mounts_under(&run_dir));
    Some((output.status.code().unwrap_or(-1), stderr, run_dir, store))
}

#[test]
fn no_fsync_is_found_by_a_power_loss() {
    let Some((code, stderr, run_dir, store)) = node_power_loss_run("no-fsync", Some("no-fsync")) else {
        return;
    };
    assert_eq!(code, 1, "no-fsync must be invalid under lose-unfsynced: {stderr}");
    // The loss really threw written data away on some node.
    let stops = fault_records(&run_dir, "lose-unfsynced");
    let reverted: u64 = stops
        .iter()
        .filter(|r| r["phase"] == "stop")
        .flat_map(|r| r["detail"]["lost"].as_object().unwrap().values().cloned().collect::<Vec<_>>())
        .map(|loss| loss["files_reverted"].as_u64().unwrap())
        .sum();
    assert!(reverted > 0, "no file lost anything: {stops:?}");
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn the_correct_node_survives_power_losses() {
    let Some((code, stderr, run_dir, store)) = node_power_loss_run("fsync", None) else {
        return;
    };
    assert_eq!(code, 0, "{stderr}");
    let starts: Vec<_> =
        fault_records(&run_dir, "lose-unfsynced").into_iter().filter(|r| r["phase"] == "start").collect();
    assert!(!starts.is_empty(), "no power loss fired");
    // Targets are recorded with the spec they were drawn from.
    assert!(starts.iter().all(|r| ["all", "majority"].contains(&r["detail"]["targets"].as_str().unwrap())));
    assert!(starts.iter().all(|r| r["targets"].as_array().unwrap().len() >= 3));
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn a_run_with_torn_writes_unmounts_everything() {
    if !fuse_ok() {
        return;
    }
    let store = temp_store("torn-toy");
    let output = faultline()
        .args(toy_args(&store, 10))
        // The toy serves only from n1: long gaps between its power losses keep enough ops ok.
        .args(["--nemesis", "torn-write", "--nemesis-targets", "leader", "--nemesis-interval", "3", "--seed", "4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The toy fsyncs each write and its directory, so a power loss of n1 loses nothing acknowledged.
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let run_dir = latest_run(&store);
    assert_nothing_left(&run_id_of(&run_dir));
    assert!(mounts_under(&run_dir).is_empty());
    assert!(fault_records(&run_dir, "torn-write")
        .iter()
        .any(|r| r["phase"] == "stop" && r["detail"]["lost"]["n1"].is_object()));
    // The data lived in the backing directory.
    assert!(run_dir.join("n1/data.backing/state.json").exists());
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn sigkill_of_the_harness_then_cleanup_leaves_no_mount_namespace_process_or_rule() {
    if !fuse_ok() {
        return;
    }
    let firewall_before = root_firewall();
    let store = temp_store("disk-kill9");
    let mut child = faultline()
        .args(toy_args(&store, 60))
        .args(["--nemesis", "lose-unfsynced,partition", "--nemesis-targets", "minority"])
        .spawn()
        .unwrap();
    let run_id = wait_for_running_nodes(&store, Duration::from_secs(20));
    let run_dir = latest_run(&store);
    assert_eq!(mounts_under(&run_dir).len(), 5, "one faultfs per node while the run goes on");
    std::thread::sleep(Duration::from_secs(3));
    signal(child.id() as i32, "KILL");
    let _ = wait_child(&mut child, Duration::from_secs(10));
    let pids = processes_in(&run_namespaces(&run_id));
    assert!(!pids.is_empty(), "the nodes should have outlived the harness");

    let output = faultline().arg("cleanup").output().unwrap();
    assert!(
        output.status.success(),
        "cleanup failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_nothing_left(&run_id);
    for pid in pids {
        assert!(!process_alive(pid), "node process {pid} survived cleanup");
    }
    assert!(mounts_under(&run_dir).is_empty(), "faultfs left mounted: {:?}", mounts_under(&run_dir));
    let sockets: Vec<_> = std::fs::read_dir("/run/faultline")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{run_id}-")))
        .map(|e| e.path())
        .collect();
    assert!(sockets.is_empty(), "control sockets left: {sockets:?}");
    assert_eq!(root_firewall(), firewall_before, "the root namespace's firewall changed");
    let _ = std::fs::remove_dir_all(&store);
}
