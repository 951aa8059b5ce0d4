//! The systems under test: the `Db` / `Client` traits and their shared types, and one folder per
//! system (`faultline_node/`, `etcd/`, `toy/`). A `Db` knows how to set up, start, kill, pause,
//! resume and tear down its nodes inside a `Cluster`, where its logs are, which workloads it runs,
//! and (optionally) who leads. A `Client` opens a connection to one node and turns an operation into
//! ok / fail / info. Powers only some systems have (Raft status for the scripted nemeses, state
//! digests for the convergence check) are optional capabilities (`Db::raft`, `Db::digests`), not
//! methods every system stubs. `build` is the one constructor from a name, used by `test`, `bench`
//! and `torture`.
//!
//! **Invariant:** a client never reports `fail` unless the operation surely did not take effect;
//! anything uncertain (timeouts, a connection lost after sending) is `info`.

pub mod etcd;
pub mod faultline_node;
pub mod file;
pub mod net;
pub mod toy;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use serde::Serialize;
use serde_json::{json, Value};

use faultline_workloads::WorkloadKind;

use crate::cluster::{node_name, Cluster, NodeId};

/// The names `--db` accepts, for help texts and errors.
pub const SYSTEM_NAMES: &[&str] = &["faultline-node", "etcd", "toy"];

/// Which system to test and how to find it: the options `test`, `bench` and `torture` share.
#[derive(clap::Args, Debug, Clone, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SystemArgs {
    /// The system under test: faultline-node (the default; the Raft store of this project), etcd
    /// (Debian's etcd 3.4, options --etcd-*) or toy (a single-copy Python register, for testing the
    /// harness itself).
    #[arg(long, default_value = "faultline-node")]
    pub db: String,
    /// Path of the faultline-node binary (default: next to this faultline binary, then PATH).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Start every node with this planted bug (e.g. stale-read, ack-before-commit).
    #[arg(long)]
    pub bug: Option<String>,
    /// How faultline-node replicates: raft, or primary-copy (a baseline that loses acknowledged
    /// writes; docs/replication.md). Passed to every node.
    #[arg(long, default_value = "raft")]
    pub replication: faultline_node_proto::Replication,
    /// Start faultline-node with --lease-reads: leaders answer reads from their lease instead of
    /// a ReadIndex quorum round (safe only while the nodes' clocks run at one rate).
    #[arg(long)]
    pub lease_reads: bool,
    /// Options of `--db etcd` (src/systems/etcd/, docs/etcd.md).
    #[command(flatten)]
    #[serde(flatten)]
    pub etcd: etcd::EtcdArgs,
    /// A system described in a file (docs/systems.md): a system.toml, a folder holding one, or the
    /// name of a folder under systems/ (e.g. redis-sentinel). Replaces --db.
    #[arg(long, value_name = "PATH")]
    pub system: Option<PathBuf>,
    /// Options of the --system file, NAME=VALUE,NAME=VALUE (`faultline systems` lists them).
    #[arg(long, value_name = "NAME=VALUE,...")]
    pub system_options: Option<String>,
}

impl Default for SystemArgs {
    fn default() -> Self {
        crate::clap_defaults()
    }
}

/// The one constructor of a system under test from its name and options.
pub fn build(args: &SystemArgs, op_timeout: Duration) -> Result<Box<dyn Db>> {
    if let Some(path) = &args.system {
        if args.bug.is_some() {
            bail!("--bug is for --db faultline-node and toy; a system file has its own options (--system-options)");
        }
        let options = args.system_options.as_deref().unwrap_or("");
        return Ok(Box::new(file::FileDb::open(path, options, op_timeout)?));
    }
    match args.db.as_str() {
        "faultline-node" | "faultline" => Ok(Box::new(
            faultline_node::FaultlineNodeDb::new(
                args.node_bin.as_deref(),
                args.bug.clone(),
                args.replication,
                op_timeout,
            )?
            .with_lease_reads(args.lease_reads),
        )),
        "toy" => Ok(Box::new(toy::ToyDb::new(args.bug.clone(), op_timeout)?)),
        "etcd" => {
            if args.bug.is_some() || args.replication != faultline_node_proto::Replication::Raft || args.lease_reads {
                bail!("--bug, --replication and --lease-reads are faultline-node's (--bug the toy store's too), not etcd's");
            }
            Ok(Box::new(etcd::EtcdDb::new(&args.etcd, op_timeout)?))
        }
        other => bail!("unknown --db `{other}`; known: {}", SYSTEM_NAMES.join(", ")),
    }
}

/// One operation a client is asked to perform, as the history records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub f: String,
    pub key: Option<Value>,
    pub value: Value,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// It happened; `Value` is the result (a read's value, or the invocation's value).
    Ok(Value),
    /// It surely did not happen.
    Fail(String),
    /// It may or may not have happened.
    Info(String),
    /// It may or may not have happened, and the client cannot go on (e.g. a stdio client that
    /// keeps dying): recorded as `info`, then the run stops as a harness failure.
    Abort(String),
}

pub trait Client: Send {
    /// Connects to `node` (or to whichever node the client prefers, starting from `node`). Called
    /// on a thread that is already inside the client namespace.
    fn open(&mut self, node: NodeId) -> Result<()>;
    fn invoke(&mut self, invocation: &Invocation) -> Completion;
    fn close(&mut self);
    /// Tells the client which workload's ops it will be asked for, before `open` (e.g. whether a
    /// read is of a register or of a stream). A client that has only one kind of read ignores it.
    fn set_workload(&mut self, _workload: WorkloadKind) {}
}

pub trait Db: Send + Sync {
    fn name(&self) -> String;
    /// What exactly is under test (binary, planted bug, ...), for test.json.
    fn describe(&self) -> Value {
        json!({"name": self.name()})
    }
    /// Prepares per-node directories and anything else needed before the first start.
    fn setup(&self, cluster: &Cluster) -> Result<()>;
    fn start(&self, cluster: &Cluster, node: NodeId) -> Result<()>;
    fn kill(&self, cluster: &Cluster, node: NodeId) -> Result<()> {
        cluster.kill_node(node)
    }
    fn pause(&self, cluster: &Cluster, node: NodeId) -> Result<()> {
        cluster.signal_node(node, Signal::SIGSTOP).map(|_| ())
    }
    fn resume(&self, cluster: &Cluster, node: NodeId) -> Result<()> {
        cluster.signal_node(node, Signal::SIGCONT).map(|_| ())
    }
    fn teardown(&self, cluster: &Cluster) -> Result<()> {
        for node in cluster.node_ids() {
            cluster.kill_node(node)?;
        }
        Ok(())
    }
    /// Files worth reading after a run, per node.
    fn log_paths(&self, cluster: &Cluster, node: NodeId) -> Vec<PathBuf>;
    /// The node that currently leads, if the system has such a thing and it can be asked. Called
    /// from a thread inside the client namespace.
    fn leader(&self, _cluster: &Cluster) -> Option<NodeId> {
        None
    }
    /// Whether `leader` can ever answer, so the start of a run does not wait for a leader that a
    /// system without one will never name.
    fn has_leader(&self) -> bool {
        true
    }
    fn new_client(&self, cluster: &Cluster) -> Box<dyn Client>;
    /// Whether the system can run `workload` (a toy store may know only registers).
    fn supports(&self, _workload: WorkloadKind) -> bool {
        true
    }
    /// The system's Raft state, when it can report it: the scripted nemeses (`figure-8`,
    /// `restart-voter`) and the default nemesis's rotation need it.
    fn raft(&self) -> Option<&dyn RaftIntrospection> {
        None
    }
    /// Replica digests for the convergence check (`src/convergence.rs`), when the system gives them.
    fn digests(&self) -> Option<&dyn StateDigests> {
        None
    }
    /// Where each node keeps its data, when the system names it: the disk faults (`src/disk.rs`)
    /// mount faultfs there.
    fn data_dirs(&self) -> Option<&dyn DataDirs> {
        None
    }
    /// Membership changes (`src/member.rs`, the `member` nemesis), when the system has commands
    /// for them.
    fn membership(&self) -> Option<&dyn Membership> {
        None
    }
    /// The executable each node runs, so clock faults can refuse one that ignores LD_PRELOAD
    /// (`src/clock.rs`); None when the system cannot say.
    fn node_binary(&self) -> Option<PathBuf> {
        None
    }
}

/// The optional power of naming each node's data directory.
pub trait DataDirs: Send + Sync {
    fn data_dir(&self, cluster: &Cluster, node: NodeId) -> PathBuf;
}

/// The optional power of changing the cluster's membership.
pub trait Membership: Send + Sync {
    /// Sends one membership change. Called from the client namespace.
    fn change_membership(
        &self,
        cluster: &Cluster,
        change: crate::member::MemberChange,
    ) -> Result<crate::member::MemberAnswer>;
    /// The voters of the current configuration, as the leader sees it. Called from the client
    /// namespace.
    fn voters(&self, cluster: &Cluster) -> Result<std::collections::BTreeSet<NodeId>>;
}

/// The optional power of reporting each node's term, role and election timer, for nemeses that
/// time their steps by the cluster's state.
pub trait RaftIntrospection: Send + Sync {
    /// Called from a thread inside the client namespace.
    fn raft_status(&self, cluster: &Cluster, node: NodeId) -> Result<NodeView>;
}

/// The optional power of reporting a node's applied index and a digest of its applied data.
pub trait StateDigests: Send + Sync {
    /// Called from a thread inside the client namespace.
    fn state_digest(&self, cluster: &Cluster, node: NodeId) -> Result<crate::convergence::ReplicaState>;
}

/// One node's view of the consensus, as `RaftIntrospection::raft_status` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub term: u64,
    /// `leader`, `follower`, `candidate` or `pre-candidate`.
    pub role: String,
    /// Ticks until the node's election timer fires, when the system says.
    pub election_remaining_ticks: Option<u64>,
}

impl NodeView {
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }
}

/// The directory of one node inside the run directory.
pub fn node_dir(cluster: &Cluster, node: NodeId) -> PathBuf {
    cluster.run_dir.join(node_name(node))
}

pub fn node_log_path(cluster: &Cluster, node: NodeId) -> PathBuf {
    cluster.run_dir.join(format!("{}.log", node_name(node)))
}

/// Starts a node's process in its namespace, working in the node's directory and appending its
/// output to the node's log: the one way every `Db` here starts a node.
pub fn spawn_in_node_dir(cluster: &Cluster, node: NodeId, binary: &Path, args: &[String]) -> anyhow::Result<()> {
    cluster.spawn_node_process(node, binary, args, &node_dir(cluster, node), &node_log_path(cluster, node))?;
    Ok(())
}

/// Where to find a sibling binary (e.g. faultline-node next to faultline in target/debug).
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Is `path` an executable file?
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
