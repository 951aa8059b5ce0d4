//! etcd as a system under test: `EtcdDb` runs one etcd member per node namespace (Debian's
//! `etcd-server` 3.4 by default, `--etcd-bin` for another build), and `EtcdClient` speaks the v3
//! JSON gateway (`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`) over plain HTTP/1.1. See docs/etcd.md.
//!
//! **Invariant:** every member listens only on its node's address in the run's private subnet;
//! its data directory and log are in the run directory. Nothing is started outside the run's
//! namespaces, so teardown and `faultline cleanup` find everything.

mod client;
mod http;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::{node_name, Cluster, NodeId};
use crate::systems::{self, node_dir, node_log_path, Client, Db};
pub use client::EtcdClient;
use http::HttpConnection;

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;

/// etcd's own read option: linearizable reads go through a ReadIndex round with a quorum,
/// serializable reads answer from the member's local state.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    Linearizable,
    Serializable,
}

/// The options of `--db etcd`, shared by `faultline test` and `faultline bench`.
#[derive(clap::Args, Debug, Clone, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EtcdArgs {
    /// The etcd binary for `--db etcd` (Debian: `apt-get install etcd-server`).
    #[arg(long, default_value = "etcd")]
    pub etcd_bin: PathBuf,
    /// Start etcd members without `--pre-vote` (it is on by default).
    #[arg(long)]
    pub etcd_no_pre_vote: bool,
    /// etcd's heartbeat interval, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub etcd_heartbeat_ms: u64,
    /// etcd's election timeout, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub etcd_election_timeout_ms: u64,
    /// Reads for `--db etcd`: linearizable (etcd's default) or serializable (local, may be stale).
    #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
    pub read_consistency: ReadConsistency,
}

impl Default for EtcdArgs {
    fn default() -> Self {
        crate::clap_defaults()
    }
}

impl systems::DataDirs for EtcdDb {
    fn data_dir(&self, cluster: &Cluster, node: NodeId) -> PathBuf {
        node_dir(cluster, node).join("data")
    }
}

pub struct EtcdDb {
    pub binary: PathBuf,
    pub pre_vote: bool,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub read_consistency: ReadConsistency,
    pub op_timeout: Duration,
    /// etcd member id (as the gateway prints it, a decimal string) -> node, learnt from status
    /// answers, so a leader that no longer answers can still be named.
    member_ids: Mutex<HashMap<String, NodeId>>,
}

impl EtcdDb {
    /// Resolves the binary (a bare name through PATH) and checks that it runs.
    pub fn new(args: &EtcdArgs, op_timeout: Duration) -> Result<EtcdDb> {
        let binary = resolve_binary(&args.etcd_bin);
        if !systems::is_executable(&binary) {
            bail!(
                "etcd binary not found at {}: install it with `apt-get install -y etcd-server` or pass --etcd-bin",
                binary.display()
            );
        }
        Ok(EtcdDb {
            binary,
            pre_vote: !args.etcd_no_pre_vote,
            heartbeat_ms: args.etcd_heartbeat_ms,
            election_timeout_ms: args.etcd_election_timeout_ms,
            read_consistency: args.read_consistency,
            op_timeout,
            member_ids: Mutex::new(HashMap::new()),
        })
    }

    fn client_address(cluster: &Cluster, node: NodeId) -> SocketAddr {
        SocketAddr::from((cluster.node_address(node), CLIENT_PORT))
    }

    fn peer_url(cluster: &Cluster, node: NodeId) -> String {
        format!("http://{}:{PEER_PORT}", cluster.node_address(node))
    }

    fn version(&self) -> Option<String> {
        let output = std::process::Command::new(&self.binary).arg("--version").output().ok()?;
        String::from_utf8_lossy(&output.stdout).lines().next().map(|l| l.trim().to_string())
    }
}

fn resolve_binary(binary: &std::path::Path) -> PathBuf {
    if binary.components().count() > 1 {
        return binary.to_path_buf();
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(binary)).find(|p| systems::is_executable(p)))
        .unwrap_or_else(|| binary.to_path_buf())
}

impl Db for EtcdDb {
    fn name(&self) -> String {
        "etcd".to_string()
    }

    fn describe(&self) -> Value {
        json!({"name": self.name(), "binary": self.binary, "version": self.version(), "pre_vote": self.pre_vote,
               "heartbeat_ms": self.heartbeat_ms, "election_timeout_ms": self.election_timeout_ms,
               "read_consistency": self.read_consistency, "client_port": CLIENT_PORT, "peer_port": PEER_PORT,
               "op_timeout_ms": self.op_timeout.as_millis() as u64})
    }

    fn setup(&self, cluster: &Cluster) -> Result<()> {
        for node in cluster.node_ids() {
            std::fs::create_dir_all(node_dir(cluster, node))?;
        }
        Ok(())
    }

    fn start(&self, cluster: &Cluster, node: NodeId) -> Result<()> {
        let initial_cluster: Vec<String> = cluster
            .node_ids()
            .into_iter()
            .map(|peer| format!("{}={}", node_name(peer), Self::peer_url(cluster, peer)))
            .collect();
        let client_url = format!("http://{}", Self::client_address(cluster, node));
        let peer_url = Self::peer_url(cluster, node);
        // On a restart the data directory already holds the membership; etcd then ignores the
        // --initial-* flags, so the same command line serves for the first start and restarts.
        let args = vec![
            format!("--name={}", node_name(node)),
            format!("--data-dir={}", node_dir(cluster, node).join("data").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={}", initial_cluster.join(",")),
            "--initial-cluster-state=new".to_string(),
            format!("--initial-cluster-token=faultline-{}", cluster.run_id),
            format!("--heartbeat-interval={}", self.heartbeat_ms),
            format!("--election-timeout={}", self.election_timeout_ms),
            format!("--pre-vote={}", self.pre_vote),
            "--enable-v2=false".to_string(),
            "--logger=zap".to_string(),
            "--log-outputs=stderr".to_string(),
        ];
        systems::spawn_in_node_dir(cluster, node, &self.binary, &args)
    }

    fn log_paths(&self, cluster: &Cluster, node: NodeId) -> Vec<PathBuf> {
        vec![node_log_path(cluster, node)]
    }

    /// Asks every member for its status (`/v3/maintenance/status`); the leader named with the
    /// highest raft term wins, mapped to a node through the member ids seen so far.
    fn leader(&self, cluster: &Cluster) -> Option<NodeId> {
        let per_member_timeout = self.op_timeout.min(Duration::from_millis(300));
        let mut best: Option<(u64, String)> = None;
        for node in cluster.node_ids() {
            let mut connection = HttpConnection::new(Self::client_address(cluster, node));
            let deadline = Instant::now() + per_member_timeout;
            let Ok((200, status)) = connection.post_json("/v3/maintenance/status", &json!({}), deadline) else {
                continue;
            };
            if let Some(member_id) = status["header"]["member_id"].as_str() {
                self.member_ids.lock().unwrap().insert(member_id.to_string(), node);
            }
            let term = status["raftTerm"]
                .as_str()
                .or_else(|| status["raft_term"].as_str())
                .or_else(|| status["header"]["raft_term"].as_str())
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
            let Some(leader) = status["leader"].as_str().filter(|l| *l != "0") else {
                continue;
            };
            if best.as_ref().is_none_or(|(best_term, _)| term > *best_term) {
                best = Some((term, leader.to_string()));
            }
        }
        let (_, leader) = best?;
        self.member_ids.lock().unwrap().get(&leader).copied()
    }

    fn data_dirs(&self) -> Option<&dyn systems::DataDirs> {
        Some(self)
    }

    fn node_binary(&self) -> Option<PathBuf> {
        Some(self.binary.clone())
    }

    fn supports(&self, workload: faultline_workloads::WorkloadKind) -> bool {
        // The v3 gateway client speaks registers only (read, write, cas); no streams or sets.
        use faultline_workloads::WorkloadKind;
        matches!(workload, WorkloadKind::Register | WorkloadKind::CasRegister)
    }

    fn new_client(&self, cluster: &Cluster) -> Box<dyn Client> {
        let addresses = cluster.node_ids().into_iter().map(|node| Self::client_address(cluster, node)).collect();
        Box::new(EtcdClient::new(addresses, self.op_timeout, self.read_consistency))
    }
}
