//! Helpers shared by the harness integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

fn is_root() -> bool {
    // SAFETY-free check: /proc/self/status has "Uid:\treal\teffective...".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Root, ip, iptables and python3 are needed for a real cluster; say why a test does nothing.
pub fn environment_ok() -> bool {
    let missing: Vec<&str> =
        ["ip", "iptables", "iptables-restore", "python3"].into_iter().filter(|p| !on_path(p)).collect();
    if !is_root() || !missing.is_empty() {
        eprintln!("skipping: needs root and {missing:?}");
        return false;
    }
    true
}

pub fn temp_store(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultline-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A short toy-db run: load for `seconds`, fast nemesis, 1 s recovery.
pub fn toy_args(store: &Path, seconds: u64) -> Vec<String> {
    [
        "test",
        "--db",
        "toy",
        "--nodes",
        "5",
        "--rate",
        "50",
        "--nemesis-interval",
        "1.5",
        "--recovery",
        "1",
        "--time-limit",
        &seconds.to_string(),
        "--store",
        store.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn latest_run(store: &Path) -> PathBuf {
    std::fs::canonicalize(store.join("latest")).expect("store/latest")
}

pub fn run_id_of(run_dir: &Path) -> String {
    let text = std::fs::read_to_string(run_dir.join("test.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["run_id"].as_str().unwrap().to_string()
}

pub fn run_namespaces(run_id: &str) -> Vec<String> {
    let prefix = format!("fl-{run_id}-");
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn net_inode_of(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// PIDs of processes living in any of these namespaces.
pub fn processes_in(namespaces: &[String]) -> Vec<i32> {
    let inodes: Vec<u64> = namespaces.iter().filter_map(|n| net_inode_of(&format!("/run/netns/{n}"))).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| net_inode_of(&format!("/proc/{pid}/ns/net")).is_some_and(|i| inodes.contains(&i)))
        .collect()
}

pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Waits until the newest run under `store` has its namespaces and a node process; returns its
/// run id.
pub fn wait_for_running_nodes(store: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(run_dir) = std::fs::canonicalize(store.join("latest")) {
            if let Ok(text) = std::fs::read_to_string(run_dir.join("history.jsonl")) {
                if text.lines().count() > 10 && run_dir.join("test.json").exists() {
                    return run_id_of(&run_dir);
                }
            }
        }
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn signal(pid: i32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

pub fn wait_child(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("faultline did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// No namespace, no process in one, no state file of the run.
pub fn assert_nothing_left(run_id: &str) {
    let namespaces = run_namespaces(run_id);
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    let state_file = Path::new("/run/faultline").join(format!("{run_id}.json"));
    assert!(!state_file.exists(), "state file left: {}", state_file.display());
    let subnet_locks: Vec<String> = std::fs::read_dir("/run/faultline")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("subnet-"))
                .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|owner| owner.trim() == run_id))
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(subnet_locks.is_empty(), "subnet lock left: {subnet_locks:?}");
}

/// The root namespace's ruleset, to prove it was never touched.
pub fn root_firewall() -> String {
    // `-S` prints no packet counters, which change with traffic.
    ["filter", "nat", "mangle", "raw"]
        .iter()
        .map(|table| {
            let output = Command::new("iptables").args(["-t", table, "-S"]).output().unwrap();
            String::from_utf8_lossy(&output.stdout).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// PIDs of live processes with an argument under `dir` (the toy db's python3 runs
/// `<run-dir>/toy_server.py`), to prove no node of a run outlived it.
pub fn processes_with_argument_under(dir: &Path) -> Vec<i32> {
    let dir = dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline.split(|b| *b == 0).any(|arg| String::from_utf8_lossy(arg).starts_with(&dir))
            })
        })
        .filter(|pid| process_alive(*pid))
        .collect()
}
