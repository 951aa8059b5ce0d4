//! The per-run state file under /run/faultline/: what a run created (namespaces, their inodes,
//! node PIDs, its /24), written *before* creating anything so that `faultline cleanup` can remove
//! the leftovers of a harness that was killed with SIGKILL.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::netns;

/// Every namespace faultline creates starts with this.
pub const NAMESPACE_PREFIX: &str = "fl-";

/// Where state files and subnet locks live (tmpfs: a reboot clears both, and the namespaces too).
pub fn state_dir() -> PathBuf {
    std::env::var_os("FAULTLINE_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/run/faultline"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    /// The harness process, and its start time in clock ticks (to tell it from a reused PID).
    pub harness_pid: i32,
    pub harness_start_ticks: u64,
    /// The run uses 10.77.<subnet_octet>.0/24.
    pub subnet_octet: u8,
    pub run_dir: PathBuf,
    pub namespaces: Vec<String>,
    /// Inodes of the namespaces, to find their processes even after the names are gone.
    pub namespace_inodes: Vec<u64>,
    /// Node name ("n1") -> PID of its current process.
    pub node_pids: BTreeMap<String, i32>,
    /// faultfs mount points (`src/disk.rs`), recorded before they are mounted.
    #[serde(default)]
    pub mounts: Vec<PathBuf>,
}

impl RunState {
    pub fn path(&self) -> PathBuf {
        state_dir().join(format!("{}.json", self.run_id))
    }

    /// Atomically replaces the state file (write to a temporary name, then rename).
    pub fn save(&self) -> Result<()> {
        let dir = state_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let temporary = dir.join(format!(".{}.json.tmp", self.run_id));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, self.path()).context("renaming the run state file")?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<RunState> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Is the harness that owns this run still alive?
    pub fn harness_alive(&self) -> bool {
        process_start_ticks(self.harness_pid) == Some(self.harness_start_ticks)
    }
}

/// All state files on this machine.
pub fn load_all_states() -> Vec<(PathBuf, Result<RunState>)> {
    let Ok(dir) = std::fs::read_dir(state_dir()) else {
        return Vec::new();
    };
    let mut states: Vec<(PathBuf, Result<RunState>)> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            let state = RunState::load(&p);
            (p, state)
        })
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    states
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; it ends at the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn subnet_lock_path(octet: u8) -> PathBuf {
    state_dir().join(format!("subnet-{octet}.lock"))
}

/// Claims a free /24 (10.77.X.0/24) for `run_id` by creating a lock file exclusively. Locks of
/// runs whose state file is gone are stale and reclaimed.
pub fn claim_subnet(run_id: &str, preferred: u8) -> Result<u8> {
    let dir = state_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for attempt in 0..254u16 {
        let octet = ((preferred as u16 + attempt - 1) % 254 + 1) as u8;
        let path = subnet_lock_path(octet);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(run_id.as_bytes())?;
                return Ok(octet);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&path).unwrap_or_default();
                let owner_state = dir.join(format!("{}.json", owner.trim()));
                if !owner.trim().is_empty() && !owner_state.exists() {
                    // The owner is gone (e.g. cleaned up without this lock); take it over.
                    let _ = std::fs::remove_file(&path);
                }
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    bail!("no free 10.77.X.0/24 subnet: run `faultline cleanup` to remove stale runs")
}

pub fn release_subnet(run_id: &str, octet: u8) {
    let path = subnet_lock_path(octet);
    if std::fs::read_to_string(&path).is_ok_and(|owner| owner.trim() == run_id) {
        let _ = std::fs::remove_file(path);
    }
}

/// How long we wait for SIGKILLed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What a cleanup removed, for reporting.
#[derive(Debug, Default)]
pub struct CleanupReport {
    pub killed_pids: Vec<i32>,
    pub deleted_namespaces: Vec<String>,
    pub errors: Vec<String>,
}

/// SIGKILLs every process inside the given namespaces (by namespace inode, which survives PID
/// reuse checks) plus `pids` whose namespace is one of them, waits for them to go, then deletes
/// the namespaces (which deletes their veths and the bridge). Idempotent.
pub fn remove_namespaces_and_processes(namespaces: &[String], recorded_inodes: &[u64], pids: &[i32]) -> CleanupReport {
    let mut report = CleanupReport::default();
    let mut inodes: Vec<u64> = recorded_inodes.to_vec();
    for name in namespaces {
        if let Some(inode) = netns::namespace_inode(name) {
            if !inodes.contains(&inode) {
                inodes.push(inode);
            }
        }
    }
    let mut victims = netns::pids_in_namespaces(&inodes);
    for pid in pids {
        let inside = netns::process_net_inode(*pid).is_some_and(|ino| inodes.contains(&ino));
        if inside && !victims.contains(pid) {
            victims.push(*pid);
        }
    }
    for pid in &victims {
        // SIGKILL works on stopped (paused) processes too.
        match nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL) {
            Ok(()) => report.killed_pids.push(*pid),
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => report.errors.push(format!("kill {pid}: {e}")),
        }
    }
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let alive = netns::pids_in_namespaces(&inodes).into_iter().filter(|pid| !is_zombie(*pid)).count();
        if alive == 0 {
            break;
        }
        if Instant::now() >= deadline {
            report.errors.push(format!("{alive} processes still alive after SIGKILL"));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let existing: Vec<&String> = namespaces.iter().filter(|name| netns::netns_path(name).exists()).collect();
    if !existing.is_empty() {
        let lines: Vec<String> = existing.iter().map(|name| format!("netns del {name}")).collect();
        if let Err(e) = netns::ip_batch(None, &lines) {
            // Fall back to one by one so one failure does not keep the others alive.
            report.errors.push(format!("{e:#}"));
            for line in &lines {
                let _ = netns::ip_batch(None, std::slice::from_ref(line));
            }
        }
        for name in existing {
            if netns::netns_path(name).exists() {
                report.errors.push(format!("namespace {name} still exists"));
            } else {
                report.deleted_namespaces.push(name.clone());
            }
        }
    }
    report
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().next().map(|s| s == "Z")
        })
        .unwrap_or(false)
}

/// Removes everything a run's state file lists, then the state file and its subnet lock.
pub fn cleanup_run(state: &RunState) -> CleanupReport {
    let pids: Vec<i32> = state.node_pids.values().copied().collect();
    let mut report = remove_namespaces_and_processes(&state.namespaces, &state.namespace_inodes, &pids);
    // After the processes that used them are dead.
    report.errors.extend(crate::disk::unmount_recorded(&state.mounts));
    if report.errors.is_empty() {
        let _ = std::fs::remove_file(state.path());
        release_subnet(&state.run_id, state.subnet_octet);
    }
    report
}
