//! The toy store, for testing the harness itself without a real distributed system: a single-copy
//! Python register server started on every node (clients talk to n1 only) and its line-JSON client.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use faultline_workloads::WorkloadKind;

use super::net::connect;
use super::{is_executable, node_dir, node_log_path, spawn_in_node_dir, Client, Completion, DataDirs, Db, Invocation};
use crate::cluster::{Cluster, NodeId};

/// A toy single-copy register server in Python, for testing the harness itself without a real
/// distributed system: every node runs it, but clients only talk to n1, which persists each write
/// with fsync before answering (so kills lose nothing). With bug `lose-writes` it keeps state in
/// memory only, so a kill makes reads go back in time: the checker must call that invalid.
pub struct ToyDb {
    pub python: PathBuf,
    pub bug: Option<String>,
    pub op_timeout: Duration,
}

impl ToyDb {
    pub fn new(bug: Option<String>, op_timeout: Duration) -> Result<ToyDb> {
        if !crate::netns::program_exists("python3") {
            bail!("--db toy needs python3");
        }
        Ok(ToyDb { python: PathBuf::from("python3"), bug, op_timeout })
    }
}

const TOY_PORT: u16 = 7100;

/// The server, one definition for `--db toy` and the system folder `systems/toy` (which runs the
/// same file through a system file and a stdio client).
const TOY_SERVER: &str = include_str!("../../../systems/toy/server.py");

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
        spawn_in_node_dir(cluster, node, &self.python, &args)
    }

    fn log_paths(&self, cluster: &Cluster, node: NodeId) -> Vec<PathBuf> {
        vec![node_log_path(cluster, node)]
    }

    fn leader(&self, _cluster: &Cluster) -> Option<NodeId> {
        Some(1)
    }

    fn data_dirs(&self) -> Option<&dyn DataDirs> {
        Some(self)
    }

    fn node_binary(&self) -> Option<PathBuf> {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths).map(|dir| dir.join(&self.python)).find(|p| is_executable(p))
    }

    fn supports(&self, workload: WorkloadKind) -> bool {
        // The toy register only knows read, write and cas.
        matches!(workload, WorkloadKind::Register | WorkloadKind::CasRegister)
    }

    fn new_client(&self, cluster: &Cluster) -> Box<dyn Client> {
        Box::new(LineJsonClient {
            address: SocketAddr::from((cluster.node_address(1), TOY_PORT)),
            op_timeout: self.op_timeout,
            connection: None,
        })
    }
}

impl DataDirs for ToyDb {
    fn data_dir(&self, cluster: &Cluster, node: NodeId) -> PathBuf {
        node_dir(cluster, node).join("data")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toy_db_runs_only_the_register_workloads() {
        let toy = ToyDb { python: PathBuf::from("python3"), bug: None, op_timeout: Duration::from_secs(1) };
        assert!(toy.supports(WorkloadKind::CasRegister) && toy.supports(WorkloadKind::Register));
        assert!(!toy.supports(WorkloadKind::Set) && !toy.supports(WorkloadKind::Append));
    }
}
