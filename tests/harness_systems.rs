//! Systems described by files (docs/systems.md), end to end: the toy register from its system
//! folder with a stdio client (valid; invalid with its planted bug), what a misbehaving stdio
//! client becomes (`info` when it dies or answers garbage, a harness failure when it keeps
//! dying), a node that never becomes ready, a broken system file, and a few seconds of Redis with
//! Sentinel and of ZooKeeper. After each run nothing may be left: namespaces, state, processes.
//!
//! They need root, iptables and python3; Redis and ZooKeeper need their Debian packages
//! (redis-server, redis-sentinel, zookeeperd, python3-kazoo). Without them a test says why and
//! passes, unless FAULTLINE_REQUIRE_SYSTEMS=1 (scripts/test.sh installs them and sets it).

mod harness_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use harness_common::*;

/// One run at a time: each checks that no process of its system outlived it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    code: i32,
    stderr: String,
    run_dir: PathBuf,
    store: PathBuf,
}

impl Run {
    fn history(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("history.jsonl")).unwrap()
    }

    fn results(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.run_dir.join("results.json")).unwrap()).unwrap()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Runs `faultline test --system SYSTEM ARGS...` and asserts that nothing of the run is left.
fn run_system(name: &str, system: &Path, args: &[&str]) -> Option<Run> {
    if !environment_ok() {
        return None;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let store = temp_store(name);
    let firewall_before = root_firewall();
    let output = faultline()
        .args(["test", "--system", system.to_str().unwrap(), "--name", name, "--store", store.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let run_dir = latest_run(&store);
    assert_nothing_left(&run_id_of(&run_dir));
    let left = processes_with_argument_under(&run_dir);
    assert!(left.is_empty(), "processes of the run left: {left:?}\n{stderr}");
    let system_dir = system.canonicalize().unwrap();
    let left = processes_with_argument_under(&system_dir);
    assert!(left.is_empty(), "processes of {} left: {left:?}\n{stderr}", system_dir.display());
    assert_eq!(root_firewall(), firewall_before, "the root namespace's firewall changed");
    Some(Run { code: output.status.code().unwrap_or(-1), stderr, run_dir, store })
}

/// Whether the packages are there; a missing one fails the test when FAULTLINE_REQUIRE_SYSTEMS=1.
fn installed(what: &str, paths: &[&str]) -> bool {
    let missing: Vec<&&str> = paths
        .iter()
        .filter(|path| {
            if path.starts_with('/') {
                !Path::new(path).exists()
            } else {
                !Command::new("sh").args(["-c", &format!("command -v {path}")]).output().unwrap().status.success()
            }
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("FAULTLINE_REQUIRE_SYSTEMS").as_deref() != Ok("1"),
        "FAULTLINE_REQUIRE_SYSTEMS=1 but {what} is not installed: {missing:?}"
    );
    eprintln!("skipping: {what} is not installed ({missing:?})");
    false
}

const SHORT: [&str; 8] = ["--nodes", "3", "--time-limit", "4", "--recovery", "1", "--rate", "100"];

#[test]
fn the_toy_register_from_its_system_folder_is_valid_under_kills() {
    let args = [&SHORT[..], &["--nemesis", "kill", "--nemesis-interval", "1", "--seed", "3"]].concat();
    let Some(run) = run_system("toy-file", &checkout().join("systems/toy"), &args) else { return };
    assert_eq!(run.code, 0, "{}", run.stderr);
    let test_json = std::fs::read_to_string(run.run_dir.join("test.json")).unwrap();
    assert!(test_json.contains("\"client\": \"stdio\""), "{test_json}");
    assert!(run.run_dir.join("clients/client-1.stderr").exists());
}

#[test]
fn the_toy_register_that_loses_writes_is_found_invalid_through_its_stdio_client() {
    let args = [
        &SHORT[..],
        &["--system-options", "bug=lose-writes", "--nemesis", "kill", "--nemesis-targets", "leader"],
        &["--nemesis-interval", "2", "--time-limit", "10", "--seed", "7"],
    ]
    .concat();
    let Some(run) = run_system("toy-file-bug", &checkout().join("systems/toy"), &args) else { return };
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.results()["verdict"], "invalid");
}

#[test]
fn a_stdio_client_that_dies_mid_op_makes_it_info_and_is_started_again() {
    let system = checkout().join("tests/systems/flaky");
    let args = [&SHORT[..], &["--nemesis", "partition", "--nemesis-interval", "1", "--seed", "1"]].concat();
    let Some(run) = run_system("stdio-dies", &system, &args) else { return };
    assert_eq!(run.code, 0, "{}", run.stderr);
    let history = run.history();
    let deaths = history.lines().filter(|l| l.contains("stdio client exited before answering")).count();
    assert!(deaths >= 5, "{deaths} deaths recorded");
    assert!(history.lines().filter(|l| l.contains("\"type\":\"info\"")).count() >= deaths);
    // Restarting a Python client costs; what matters is that ops go on succeeding between deaths.
    assert!(run.results()["ops"]["ok"].as_u64().unwrap() >= 40, "{}", run.results());
}

#[test]
fn a_stdio_answer_that_is_not_json_is_info_with_the_text_in_the_error() {
    let system = checkout().join("tests/systems/flaky");
    let args = [
        &SHORT[..],
        &[
            "--system-options",
            "mode=garbage-sometimes",
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "1",
            "--seed",
            "1",
        ],
    ]
    .concat();
    let Some(run) = run_system("stdio-garbage", &system, &args) else { return };
    assert_eq!(run.code, 0, "{}", run.stderr);
    let garbage: Vec<String> =
        run.history().lines().filter(|l| l.contains("this is not json")).map(str::to_string).collect();
    assert!(garbage.len() >= 5, "{garbage:?}");
    assert!(garbage.iter().all(|l| l.contains("\"type\":\"info\"") && l.contains("not a stdio answer")), "{garbage:?}");
}

#[test]
fn a_stdio_client_that_keeps_dying_stops_the_run_as_a_harness_failure_with_its_stderr() {
    let system = checkout().join("tests/systems/flaky");
    let args = [
        &SHORT[..],
        &["--system-options", "mode=always-die", "--nemesis", "partition", "--nemesis-interval", "1", "--seed", "1"],
    ]
    .concat();
    let Some(run) = run_system("stdio-keeps-dying", &system, &args) else { return };
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("failed 5 times in a row"), "{}", run.stderr);
    assert!(run.stderr.contains("boom: this client always dies"), "{}", run.stderr);
    // The op in flight when it gave up may have happened: info, never fail.
    let history = run.history();
    assert!(history.lines().any(|l| l.contains("failed 5 times") && l.contains("\"type\":\"info\"")));
    assert!(!history.lines().any(|l| l.contains("\"type\":\"fail\"")), "{history}");
}

#[test]
fn a_node_that_never_becomes_ready_stops_the_run_with_its_log_tail() {
    let system = checkout().join("tests/systems/never-ready");
    let Some(run) = run_system("never-ready", &system, &SHORT) else { return };
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("n1 did not become ready within 2s"), "{}", run.stderr);
    assert!(run.stderr.contains("never-ready: I will never listen"), "{}", run.stderr);
    assert!(!run.history().contains("\"type\":\"invoke\""), "no op may start");
}

#[test]
fn a_broken_system_file_is_refused_with_file_line_and_key_before_anything_starts() {
    if !environment_ok() {
        return;
    }
    let dir = temp_store("broken-system");
    let text = std::fs::read_to_string(checkout().join("systems/toy/system.toml")).unwrap();
    let broken = text.replacen("timeout_s = 10", "timeout_s = 10\nport = 7100", 1);
    std::fs::write(dir.join("system.toml"), &broken).unwrap();
    let store = dir.join("store");
    let output = faultline()
        .args(["test", "--system", dir.to_str().unwrap(), "--store", store.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    let line = broken.lines().position(|l| l == "port = 7100").unwrap() + 1;
    assert!(stderr.contains(&format!("system.toml:{line}: port: unknown field `port`")), "{stderr}");
    assert!(!store.exists(), "a run directory was made for a broken file");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn redis_with_sentinel_runs_a_few_seconds_of_set_load_under_partitions() {
    if !environment_ok() || !installed("Redis", &["redis-server", "redis-sentinel", "redis-cli"]) {
        return;
    }
    let args = [
        "--workload",
        "set",
        "--nemesis",
        "partition",
        "--partition-shapes",
        "isolate-leader",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "6",
        "--recovery",
        "3",
        "--rate",
        "200",
        "--seed",
        "1",
    ];
    let Some(run) = run_system("redis-short", &checkout().join("systems/redis-sentinel"), &args) else { return };
    // Valid or invalid (Redis may lose writes already): a verdict, with load and faults.
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    let results = run.results();
    assert!(results["ops"]["ok"].as_u64().unwrap() >= 200, "{results}");
    assert!(results["faults_started"].as_u64().unwrap() >= 1, "{results}");
    assert!(run.run_dir.join("n2.sentinel.log").is_file());
    let log = std::fs::read_to_string(run.run_dir.join("faultline.log")).unwrap();
    assert!(log.contains("leader: n1"), "the sentinels' primary was not found at start:\n{log}");
}

#[test]
fn zookeeper_runs_a_few_seconds_of_cas_register_load_under_partitions_with_sync_reads() {
    let needs = ["java", "/usr/share/java/zookeeper.jar", "/usr/lib/python3/dist-packages/kazoo/__init__.py"];
    if !environment_ok() || !installed("ZooKeeper", &needs) {
        return;
    }
    let args = [
        "--nodes",
        "3",
        "--system-options",
        "reads=sync",
        "--nemesis",
        "partition",
        "--partition-shapes",
        "isolate-one",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "6",
        "--recovery",
        "3",
        "--rate",
        "100",
        "--seed",
        "1",
    ];
    let Some(run) = run_system("zookeeper-short", &checkout().join("systems/zookeeper"), &args) else { return };
    assert!(run.code == 0 || run.code == 1 || run.code == 2, "{}", run.stderr);
    let results = run.results();
    assert!(results["ops"]["ok"].as_u64().unwrap() >= 100, "{results}");
    assert!(results["faults_started"].as_u64().unwrap() >= 1, "{results}");
}

#[test]
fn faultline_systems_lists_every_shipped_folder_and_names_a_broken_one() {
    let output = faultline().args(["systems", "--dir", checkout().join("systems").to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for name in ["etcd", "redis-sentinel", "toy", "zookeeper"] {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("{name}  ("))), "{name} missing:\n{stdout}");
    }
    assert!(stdout.contains("workloads: set, register, cas-register; client: redis"), "{stdout}");
    assert!(stdout.contains("option reads=plain (plain|sync)"), "{stdout}");

    let dir = temp_store("systems-broken");
    std::fs::create_dir_all(dir.join("bad")).unwrap();
    std::fs::write(dir.join("bad/system.toml"), "name = \"bad\"\nworkloads = [\"register\"]\nnodes = 3\n").unwrap();
    let output = faultline().args(["systems", "--dir", dir.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(5), "{stdout}");
    assert!(stdout.contains("BROKEN") && stdout.contains("system.toml:3: nodes: unknown field `nodes`"), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}
