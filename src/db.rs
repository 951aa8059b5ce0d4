//! The system under test as a trait. A `Db` knows how to set up, start, kill, pause, resume and tear
//! down its nodes inside a `Cluster`, where its logs are, and (optionally) who leads. A `Client`
//! opens a connection to one node and turns an operation into ok / fail / info.
//!
//! **Invariant:** a client never reports `fail` unless the operation surely did not take effect;
//! anything uncertain (timeouts, a connection lost after sending) is `info`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use faultline_workloads::WorkloadKind;

use crate::cluster::{node_name, Cluster, NodeId};

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
    /// The node's applied index and a digest of its applied data, for the convergence check
    /// (`src/convergence.rs`); None when the system cannot say. Called from a thread inside the
    /// client namespace.
    fn state_digest(&self, _cluster: &Cluster, _node: NodeId) -> Option<Result<crate::convergence::ReplicaState>> {
        None
    }
    /// The node's term, role and election timer, for nemeses that time their steps by the
    /// cluster's state (`figure-8`, `restart-voter`); None when the system cannot say. Called from
    /// the client namespace.
    fn raft_status(&self, _cluster: &Cluster, _node: NodeId) -> Option<Result<NodeView>> {
        None
    }
    /// Whether `raft_status` answers, so the default nemesis may include the scripted nemeses
    /// (known before the cluster exists, unlike `raft_status` itself).
    fn has_raft_status(&self) -> bool {
        false
    }
}

/// One node's view of the consensus, as `Db::raft_status` gives it.
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
pub fn spawn_in_node_dir(
    cluster: &Cluster,
    node: NodeId,
    binary: &std::path::Path,
    args: &[String],
) -> anyhow::Result<()> {
    cluster.spawn_node_process(node, binary, args, &node_dir(cluster, node), &node_log_path(cluster, node))?;
    Ok(())
}

/// The port every faultline-node listens on (each node has its own address).
pub const NODE_PORT: u16 = 7000;

/// faultline-node, the default system under test.
pub struct FaultlineNodeDb {
    pub binary: PathBuf,
    pub bug: Option<String>,
    pub op_timeout: Duration,
}

impl FaultlineNodeDb {
    fn address(cluster: &Cluster, node: NodeId) -> SocketAddr {
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
        crate::db::spawn_in_node_dir(cluster, node, &self.binary, &args)
    }

    fn log_paths(&self, cluster: &Cluster, node: NodeId) -> Vec<PathBuf> {
        vec![node_log_path(cluster, node)]
    }

    fn leader(&self, cluster: &Cluster) -> Option<NodeId> {
        crate::node_client::find_leader(cluster, self.op_timeout)
    }

    fn new_client(&self, cluster: &Cluster) -> Box<dyn Client> {
        Box::new(crate::node_client::NodeClient::new(cluster, self.op_timeout))
    }

    fn state_digest(&self, cluster: &Cluster, node: NodeId) -> Option<Result<crate::convergence::ReplicaState>> {
        let address = SocketAddr::from((cluster.node_address(node), NODE_PORT));
        Some(crate::node_client::node_digest(address, self.op_timeout))
    }

    fn has_raft_status(&self) -> bool {
        true
    }

    fn raft_status(&self, cluster: &Cluster, node: NodeId) -> Option<Result<NodeView>> {
        let address = SocketAddr::from((cluster.node_address(node), NODE_PORT));
        let from = std::net::IpAddr::V4(cluster.control_address());
        let status =
            crate::node_client::node_status_from(from, address, self.op_timeout.min(Duration::from_millis(100)));
        Some(status.map(|s| {
            let elapsed = s["election_elapsed_ticks"].as_u64();
            let timeout = s["election_timeout_ticks"].as_u64();
            NodeView {
                term: s["term"].as_u64().unwrap_or(0),
                role: s["role"].as_str().unwrap_or("unknown").to_string(),
                election_remaining_ticks: elapsed.zip(timeout).map(|(e, t)| t.saturating_sub(e)),
            }
        }))
    }
}

/// Where to find a sibling binary (e.g. faultline-node next to faultline in target/debug).
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A toy single-copy register server in Python, for testing the harness itself without a real
/// distributed system: every node runs it, but clients only talk to n1, which persists each write
/// with fsync before answering (so kills lose nothing). With bug `lose-writes` it keeps state in
/// memory only, so a kill makes reads go back in time: the checker must call that invalid.
pub struct ToyDb {
    pub python: PathBuf,
    pub bug: Option<String>,
    pub op_timeout: Duration,
}

const TOY_PORT: u16 = 7100;

const TOY_SERVER: &str = r#"
import json, os, socketserver, sys, threading
lock = threading.Lock()
listen_host, port, data_dir, bug = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
path = os.path.join(data_dir, "state.json")
state = {}
if bug != "lose-writes" and os.path.exists(path):
    state = json.load(open(path))
def persist():
    if bug == "lose-writes":
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f); f.flush(); os.fsync(f.fileno())
    os.rename(tmp, path)
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            req = json.loads(line)
            with lock:
                resp = apply(req)
            self.wfile.write((json.dumps(resp) + "\n").encode()); self.wfile.flush()
def apply(req):
            k, f = str(req.get("key")), req["f"]
            if f == "read":
                resp = {"ok": True, "value": state.get(k)}
            elif f == "write":
                state[k] = req["value"]; persist(); resp = {"ok": True}
            elif f == "cas":
                if state.get(k) == req["value"][0]:
                    state[k] = req["value"][1]; persist(); resp = {"ok": True}
                else:
                    resp = {"ok": False, "error": "cas-mismatch"}
            else:
                resp = {"ok": False, "error": "unknown-f"}
            return resp
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
print("toy register listening on", listen_host, port, flush=True)
Server((listen_host, port), Handler).serve_forever()
"#;

impl Db for ToyDb {
    fn name(&self) -> String {
        "toy".to_string()
    }

    fn describe(&self) -> Value {
        json!({"name": self.name(), "python": self.python, "bug": self.bug})
    }

    fn setup(&self, cluster: &Cluster) -> Result<()> {
        for node in cluster.node_ids() {
            std::fs::create_dir_all(node_dir(cluster, node).join("data"))?;
        }
        std::fs::write(cluster.run_dir.join("toy_server.py"), TOY_SERVER)?;
        Ok(())
    }

    fn start(&self, cluster: &Cluster, node: NodeId) -> Result<()> {
        let args = vec![
            cluster.run_dir.join("toy_server.py").display().to_string(),
            cluster.node_address(node).to_string(),
            TOY_PORT.to_string(),
            node_dir(cluster, node).join("data").display().to_string(),
            self.bug.clone().unwrap_or_else(|| "none".to_string()),
        ];
        crate::db::spawn_in_node_dir(cluster, node, &self.python, &args)
    }

    fn log_paths(&self, cluster: &Cluster, node: NodeId) -> Vec<PathBuf> {
        vec![node_log_path(cluster, node)]
    }

    fn leader(&self, _cluster: &Cluster) -> Option<NodeId> {
        Some(1)
    }

    fn new_client(&self, cluster: &Cluster) -> Box<dyn Client> {
        Box::new(LineJsonClient {
            address: SocketAddr::from((cluster.node_address(1), TOY_PORT)),
            op_timeout: self.op_timeout,
            connection: None,
        })
    }
}

/// A client for the toy server: one JSON request per line, one JSON answer per line.
struct LineJsonClient {
    address: SocketAddr,
    op_timeout: Duration,
    connection: Option<BufReader<TcpStream>>,
}

impl Client for LineJsonClient {
    fn open(&mut self, _node: NodeId) -> Result<()> {
        // Connecting lazily lets a client outlive a dead server: each invoke retries the connect.
        Ok(())
    }

    fn invoke(&mut self, invocation: &Invocation) -> Completion {
        if self.connection.is_none() {
            match connect(self.address, self.op_timeout) {
                Ok(stream) => self.connection = Some(BufReader::new(stream)),
                // Nothing was sent: the operation surely did not happen.
                Err(e) => return Completion::Fail(format!("connect: {e}")),
            }
        }
        let connection = self.connection.as_mut().expect("connected above");
        let request = json!({"f": invocation.f, "key": invocation.key, "value": invocation.value});
        let mut line = request.to_string();
        line.push('\n');
        if let Err(e) = connection.get_mut().write_all(line.as_bytes()) {
            self.connection = None;
            return Completion::Info(format!("send: {e}"));
        }
        let mut answer = String::new();
        match connection.read_line(&mut answer) {
            Ok(0) | Err(_) => {
                self.connection = None;
                Completion::Info("no answer".to_string())
            }
            Ok(_) => match serde_json::from_str::<Value>(&answer) {
                Ok(reply) if reply["ok"] == json!(true) => {
                    if invocation.f == "read" {
                        Completion::Ok(reply["value"].clone())
                    } else {
                        Completion::Ok(invocation.value.clone())
                    }
                }
                Ok(reply) => Completion::Fail(reply["error"].as_str().unwrap_or("error").to_string()),
                Err(e) => {
                    self.connection = None;
                    Completion::Info(format!("bad answer: {e}"))
                }
            },
        }
    }

    fn close(&mut self) {
        self.connection = None;
    }
}

/// A TCP connection with connect, read and write timeouts.
pub fn connect(address: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, timeout)?;
    configure(&stream, timeout)?;
    Ok(stream)
}

/// `connect` from a given local address (e.g. the cluster's control address).
pub fn connect_from(local: std::net::IpAddr, address: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect_timeout(&address.into(), timeout)?;
    let stream: TcpStream = socket.into();
    configure(&stream, timeout)?;
    Ok(stream)
}

fn configure(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)
}

/// Is `path` an executable file?
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
