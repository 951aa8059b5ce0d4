//! End-to-end tests against real etcd (Debian's etcd-server 3.4), about 15 s of load each, run
//! from etcd's system file (`--system systems/etcd`, docs/systems.md) with the built-in client: etcd
//! with linearizable reads is valid under partitions, kills and pauses; with serializable reads a
//! partition that cuts members off lets them answer stale reads, and the checker must say invalid.
//! After each run no etcd process, namespace or firewall rule may be left.
//!
//! They need root, iptables and `etcd` on PATH (`apt-get install -y etcd-server`); without them
//! they say why and pass. FAULTLINE_E2E_SECONDS changes the load time.

mod harness_common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use harness_common::*;

/// The tests of this file run one at a time: each checks that no etcd runs before and after it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn etcd_installed() -> bool {
    Command::new("etcd").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn seconds(default: u64) -> String {
    std::env::var("FAULTLINE_E2E_SECONDS").unwrap_or_else(|_| default.to_string())
}

fn etcd_processes() -> Vec<String> {
    let output = Command::new("pgrep").args(["-a", "-x", "etcd"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
}

/// Runs `faultline test --system systems/etcd`; returns (exit code, stderr, run dir, store). Asserts that the
/// run left nothing behind: namespaces, state, etcd processes, root firewall rules.
fn run_etcd_test(name: &str, load_seconds: u64, extra: &[&str]) -> Option<(i32, String, PathBuf, PathBuf)> {
    if !environment_ok() {
        return None;
    }
    if !etcd_installed() {
        eprintln!("skipping: etcd is not installed (apt-get install -y etcd-server)");
        return None;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    assert!(etcd_processes().is_empty(), "etcd already running before the test: {:?}", etcd_processes());
    let firewall_before = root_firewall();
    let store = temp_store(name);
    let output = faultline()
        .args([
            "test",
            "--system",
            concat!(env!("CARGO_MANIFEST_DIR"), "/systems/etcd"),
            "--name",
            name,
            "--time-limit",
            &seconds(load_seconds),
            "--recovery",
            "4",
            "--store",
            store.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let run_dir = latest_run(&store);
    assert_nothing_left(&run_id_of(&run_dir));
    assert!(etcd_processes().is_empty(), "etcd left running: {:?}", etcd_processes());
    assert_eq!(root_firewall(), firewall_before, "the root namespace's firewall changed");
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let run_id = run_id_of(&run_dir);
    assert!(!String::from_utf8_lossy(&netns.stdout).contains(&run_id), "namespaces of run {run_id} left");
    Some((output.status.code().unwrap_or(-1), stderr, run_dir, store))
}

#[test]
fn etcd_with_linearizable_reads_survives_partitions_kills_and_pauses() {
    let extra = ["--nemesis", "partition,kill,pause", "--nemesis-interval", "3", "--seed", "1"];
    let Some((code, stderr, run_dir, store)) = run_etcd_test("etcd-valid", 15, &extra) else {
        return;
    };
    assert_eq!(code, 0, "{stderr}");
    let test_json = std::fs::read_to_string(run_dir.join("test.json")).unwrap();
    assert!(test_json.contains("\"reads\": \"linearizable\""), "{test_json}");
    assert!(test_json.contains("systems/etcd/system.toml"), "{test_json}");
    assert!(std::fs::read_to_string(run_dir.join("n1.log")).unwrap().contains("etcd"), "no etcd log");
    let _ = std::fs::remove_dir_all(store);
}

/// Serializable reads are answered from the member's own state. A member cut off from the others
/// (the leader, or one follower) keeps answering its clients' reads while the majority commits new
/// writes: stale reads, which the checker must find. Few keys and many workers make them frequent.
#[test]
fn etcd_with_serializable_reads_is_caught_serving_stale_reads_in_a_partition() {
    let extra = [
        "--system-options",
        "reads=serializable",
        "--nemesis",
        "partition",
        "--partition-shapes",
        "isolate-leader,isolate-one",
        "--nemesis-interval",
        "3",
        "--concurrency",
        "15",
        "--rate",
        "200",
        "--keys",
        "2",
        "--seed",
        "2",
    ];
    let Some((code, stderr, run_dir, store)) = run_etcd_test("etcd-stale", 15, &extra) else {
        return;
    };
    assert_eq!(code, 1, "{stderr}");
    assert!(run_dir.join("check.html").is_file(), "no timeline of the stale read in {}", run_dir.display());
    let _ = std::fs::remove_dir_all(store);
}
