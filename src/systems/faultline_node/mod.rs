//! faultline-node as a system under test: `FaultlineNodeDb` starts one `faultline-node` process per
//! node namespace and offers both optional powers (Raft status for the scripted nemeses, replica
//! digests for the convergence check); `client.rs` speaks its wire protocol (docs/node-protocol.md).

pub mod client;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{
    is_executable, node_dir, node_log_path, sibling_binary, spawn_in_node_dir, Client, Db, NodeView, RaftIntrospection,
    StateDigests,
};
use crate::cluster::{Cluster, NodeId};

/// The port every faultline-node listens on (each node has its own address).
pub const NODE_PORT: u16 = 7000;

/// faultline-node, the default system under test.
pub struct FaultlineNodeDb {
    pub binary: PathBuf,
    pub bug: Option<String>,
    pub op_timeout: Duration,
}

impl FaultlineNodeDb {
    /// Finds the binary (`--node-bin`, else next to this faultline binary, else on PATH) and
    /// refuses to go on without one.
    pub fn new(node_bin: Option<&Path>, bug: Option<String>, op_timeout: Duration) -> Result<FaultlineNodeDb> {
        let binary = node_bin.map(Path::to_path_buf).unwrap_or_else(|| sibling_binary("faultline-node"));
        let resolved = if binary.components().count() > 1 {
            binary.clone()
        } else {
            std::env::var_os("PATH")
                .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(&binary)).find(|p| is_executable(p)))
                .unwrap_or(binary.clone())
        };
        if !is_executable(&resolved) {
            bail!(
                "faultline-node binary not found at {}: build it with `cargo build -p faultline-node` or pass --node-bin",
                resolved.display()
            );
        }
        let binary = resolved.canonicalize().unwrap_or(resolved);
        Ok(FaultlineNodeDb { binary, bug, op_timeout })
    }

    pub fn address(cluster: &Cluster, node: NodeId) -> SocketAddr {
        SocketAddr::from((cluster.node_address(node), NODE_PORT))
    }
}

impl Db for FaultlineNodeDb {
    fn name(&self) -> String {
        "faultline-node".to_string()
    }

    fn describe(&self) -> Value {
        let modified =
            std::fs::metadata(&self.binary).and_then(|m| m.modified()).ok().map(crate::run_store::utc_timestamp);
        json!({"name": self.name(), "binary": self.binary, "binary_modified": modified, "bug": self.bug,
               "port": NODE_PORT, "op_timeout_ms": self.op_timeout.as_millis() as u64})
    }

    fn setup(&self, cluster: &Cluster) -> Result<()> {
        for node in cluster.node_ids() {
            let data = node_dir(cluster, node).join("data");
            std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        }
        Ok(())
    }

    fn start(&self, cluster: &Cluster, node: NodeId) -> Result<()> {
        let peers: Vec<String> =
            cluster.node_ids().into_iter().map(|peer| format!("{peer}={}", Self::address(cluster, peer))).collect();
        let mut args = vec![
            "--id".to_string(),
            node.to_string(),
            "--listen".to_string(),
            Self::address(cluster, node).to_string(),
            "--peers".to_string(),
            peers.join(","),
            "--data-dir".to_string(),
            node_dir(cluster, node).join("data").display().to_string(),
        ];
        if let Some(bug) = &self.bug {
            args.push("--bug".to_string());
            args.push(bug.clone());
        }
        spawn_in_node_dir(cluster, node, &self.binary, &args)
    }

    fn log_paths(&self, cluster: &Cluster, node: NodeId) -> Vec<PathBuf> {
        vec![node_log_path(cluster, node)]
    }

    fn leader(&self, cluster: &Cluster) -> Option<NodeId> {
        client::find_leader(cluster, self.op_timeout)
    }

    fn new_client(&self, cluster: &Cluster) -> Box<dyn Client> {
        Box::new(client::NodeClient::new(cluster, self.op_timeout))
    }

    fn raft(&self) -> Option<&dyn RaftIntrospection> {
        Some(self)
    }

    fn digests(&self) -> Option<&dyn StateDigests> {
        Some(self)
    }
}

impl StateDigests for FaultlineNodeDb {
    fn state_digest(&self, cluster: &Cluster, node: NodeId) -> Result<crate::convergence::ReplicaState> {
        client::node_digest(Self::address(cluster, node), self.op_timeout)
    }
}

impl RaftIntrospection for FaultlineNodeDb {
    fn raft_status(&self, cluster: &Cluster, node: NodeId) -> Result<NodeView> {
        let from = std::net::IpAddr::V4(cluster.control_address());
        let status = client::node_status_from(
            from,
            Self::address(cluster, node),
            self.op_timeout.min(Duration::from_millis(100)),
        )?;
        let elapsed = status["election_elapsed_ticks"].as_u64();
        let timeout = status["election_timeout_ticks"].as_u64();
        Ok(NodeView {
            term: status["term"].as_u64().unwrap_or(0),
            role: status["role"].as_str().unwrap_or("unknown").to_string(),
            election_remaining_ticks: elapsed.zip(timeout).map(|(e, t)| t.saturating_sub(e)),
        })
    }
}
