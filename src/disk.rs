//! The disk under the nodes: a faultfs mount (`faultfs/`, `docs/faultfs.md`) over each node's data
//! directory, made when a disk fault is asked for, so the nemesis can take a node's un-fsynced
//! writes away as a power loss would (`nemesis/disk.rs`).
//!
//! The data lives in a backing directory beside the mount point (`<node dir>/data.backing`), the
//! control socket in the state directory (a Unix socket path must stay short). The file systems
//! are served by threads of the harness itself, mounted with `auto_unmount`, so even a SIGKILL of
//! the harness leaves no mount behind once libfuse's watcher has seen it; `faultline cleanup`
//! detaches whatever a run recorded besides.
//!
//! **Invariant:** every mount point is recorded in the run's state file before it is mounted,
//! and unmounted only after the node using it was killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use faultline_faultfs::protocol::Loss;
use faultline_faultfs::{ControlClient, MountConfig, MountGuard};

use crate::cluster::{node_name, Cluster, NodeId};
use crate::systems::Db;

/// How long one control request (a power loss rewrites what it saved) may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// Everything written and not fsynced is gone.
    LoseUnfsynced,
    /// As above, but the last un-fsynced write survives as a prefix of itself (drawn from the seed).
    TornWrite { seed: u64 },
}

/// One node's mount.
struct NodeDisk {
    guard: MountGuard,
    control: ControlClient,
}

/// The faultfs mounts of one run, one per node; unmounted on drop.
pub struct DiskLayer {
    disks: Mutex<BTreeMap<NodeId, NodeDisk>>,
}

/// How a control socket's name ends; its name starts with the run id and a dash.
const SOCKET_SUFFIX: &str = ".faultfs.sock";

/// Where a node's control socket lives: in the state directory, whose path is short.
fn control_socket(cluster: &Cluster, node: NodeId) -> PathBuf {
    crate::cluster::state::state_dir().join(format!("{}-{}{SOCKET_SUFFIX}", cluster.run_id, node_name(node)))
}

/// Removes the control sockets of runs that have no state file (any more), as a harness killed
/// with SIGKILL leaves them; returns what it removed. A run records its state before it mounts
/// anything, so a run starting meanwhile keeps its sockets. For `faultline cleanup`.
pub fn remove_orphan_sockets() -> Vec<PathBuf> {
    let state_dir = crate::cluster::state::state_dir();
    let Ok(dir) = std::fs::read_dir(&state_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for path in dir.filter_map(|e| e.ok()).map(|e| e.path()) {
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let Some(run) = name.strip_suffix(SOCKET_SUFFIX).and_then(|rest| rest.rsplit_once('-')).map(|(run, _)| run)
        else {
            continue;
        };
        if !state_dir.join(format!("{run}.json")).exists() && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// The backing directory of a mount point: its sibling, never inside it.
pub fn backing_dir(mountpoint: &Path) -> PathBuf {
    let mut name = mountpoint.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".backing");
    mountpoint.with_file_name(name)
}

impl DiskLayer {
    /// Refuses, before anything is created, a disk fault on a system that names no data directory
    /// or on a machine without FUSE.
    pub fn check_possible(db: &dyn Db) -> Result<()> {
        if db.data_dirs().is_none() {
            bail!(
                "disk faults need the system's data directory, and {} names none; \
                 drop lose-unfsynced/torn-write from --nemesis",
                db.name()
            );
        }
        if !Path::new("/dev/fuse").exists() {
            bail!(
                "disk faults need FUSE: /dev/fuse is missing (load the fuse module, or give the container the device)"
            );
        }
        if !crate::netns::program_exists("fusermount3") {
            bail!("disk faults need fusermount3 (Debian package fuse3) for unmounting after a killed harness");
        }
        Ok(())
    }

    /// Mounts a faultfs over every node's data directory. On any failure the mounts made so far
    /// are taken down before the error is returned.
    pub fn mount_all(cluster: &Cluster, db: &dyn Db) -> Result<DiskLayer> {
        let layer = DiskLayer { disks: Mutex::new(BTreeMap::new()) };
        for node in cluster.node_ids() {
            let mountpoint = db.data_dirs().context("the system names no data directory")?.data_dir(cluster, node);
            let backing = backing_dir(&mountpoint);
            for dir in [&mountpoint, &backing] {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let mountpoint =
                mountpoint.canonicalize().with_context(|| format!("resolving {}", mountpoint.display()))?;
            let socket = control_socket(cluster, node);
            cluster.record_mount(&mountpoint)?;
            let guard = faultline_faultfs::mount(&MountConfig::new(&mountpoint, &backing, &socket))
                .with_context(|| format!("mounting faultfs for {}", node_name(node)))?;
            let control = ControlClient::new(&socket, CONTROL_TIMEOUT);
            layer.disks.lock().unwrap().insert(node, NodeDisk { guard, control });
        }
        Ok(layer)
    }

    /// A power loss of `node`'s disk. The node must be dead: its open files would survive it.
    pub fn lose(&self, node: NodeId, loss: PowerLoss) -> Result<Loss> {
        let control = {
            let disks = self.disks.lock().unwrap();
            disks
                .get(&node)
                .map(|d| d.control.clone())
                .with_context(|| format!("{} has no faultfs", node_name(node)))?
        };
        let lost = match loss {
            PowerLoss::LoseUnfsynced => control.lose_unfsynced(),
            PowerLoss::TornWrite { seed } => control.torn_write(seed),
        };
        lost.with_context(|| format!("power loss of {}'s disk", node_name(node)))
    }

    /// Unmounts every mount (bounded waits inside faultfs), after the nodes were killed.
    pub fn unmount_all(&self, cluster: &Cluster) -> Result<()> {
        let disks = std::mem::take(&mut *self.disks.lock().unwrap());
        let mut errors = Vec::new();
        for (node, disk) in disks {
            let mountpoint = disk.guard.mountpoint().to_path_buf();
            match disk.guard.unmount() {
                Ok(()) => cluster.forget_mount(&mountpoint)?,
                Err(e) => errors.push(format!("{}: {e}", node_name(node))),
            }
        }
        if !errors.is_empty() {
            bail!("unmounting faultfs: {}; run `faultline cleanup`", errors.join("; "));
        }
        Ok(())
    }
}

/// Detaches recorded faultfs mounts that are still mounted (for `faultline cleanup` and a
/// cluster's teardown); returns an error line per mount that would not go.
pub fn unmount_recorded(mounts: &[PathBuf]) -> Vec<String> {
    let mut errors = Vec::new();
    for mountpoint in mounts {
        if let Err(e) = faultline_faultfs::unmount_stale(mountpoint) {
            errors.push(format!("unmounting {}: {e}", mountpoint.display()));
        }
    }
    errors
}

/// What one disk lost, as the history's fault detail (faultfs's `Loss`, named for the reader).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LossDetail {
    pub files_reverted: u64,
    pub entries_reverted: u64,
    pub objects_deleted: u64,
    /// For `torn-write`: the length of the write that was torn, and how much of it was kept.
    pub torn_write_bytes: Option<u64>,
    pub torn_write_kept_bytes: Option<u64>,
}

impl From<Loss> for LossDetail {
    fn from(loss: Loss) -> LossDetail {
        LossDetail {
            files_reverted: loss.files_reverted,
            entries_reverted: loss.entries_reverted,
            objects_deleted: loss.objects_deleted,
            torn_write_bytes: loss.torn.map(|(len, _)| len),
            torn_write_kept_bytes: loss.torn.map(|(_, kept)| kept),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backing_directory_is_a_sibling_of_the_mount_point() {
        assert_eq!(backing_dir(Path::new("/r/n1/data")), PathBuf::from("/r/n1/data.backing"));
        assert!(!backing_dir(Path::new("/r/n1/data")).starts_with("/r/n1/data/"));
    }
}
