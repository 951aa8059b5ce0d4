//! A system under test described by a file (`faultline test --system PATH`, docs/systems.md):
//! `FileDb` implements the `Db` trait from a `faultline_sysfile::System`. It renders the file's
//! config templates into each node's directory, starts the node's processes in the node's
//! namespace through `Cluster::spawn_in_node` (so kill, pause, resume, partitions and teardown
//! reach every process of a node with nothing in the file), waits until the node is ready, and
//! hands out the client the file names: a built-in one (`etcd`, `redis`) or a `stdio` program.
//! The file's commands (readiness, leader, digest) run in the client namespace with a timeout.
//!
//! **Invariant:** every template was checked when the file was loaded, before any process
//! starts; a node that never becomes ready at its first start stops the run as a harness failure
//! with that node's log tail.

mod redis_client;
mod stdio;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use faultline_sysfile::{ClientKind, Facts, System, SystemFile, When};
use faultline_workloads::WorkloadKind;
use serde_json::{json, Value};

use crate::cluster::{node_name, Cluster, Launch, NodeId};
use crate::systems::{self as db, node_dir, Client, Db, StateDigests};
pub use redis_client::RedisClient;
pub use stdio::StdioClient;

/// Where system folders are looked for when `--system` names one that is not a path.
pub fn system_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("FAULTLINE_SYSTEMS") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(PathBuf::from("systems"));
    // target/debug/faultline -> the checkout's systems/.
    if let Some(checkout) = std::env::current_exe().ok().and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf)) {
        dirs.push(checkout.join("systems"));
    }
    dirs
}

/// `--system`'s argument as a path: itself when it exists, else a folder of that name under
/// one of `system_search_dirs`.
pub fn resolve_system_path(given: &Path) -> Result<PathBuf> {
    if given.exists() {
        return Ok(given.to_path_buf());
    }
    if given.components().count() == 1 {
        for dir in system_search_dirs() {
            let candidate = dir.join(given);
            if candidate.join(faultline_sysfile::FILE_NAME).is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!("no system file at {} (and no system folder of that name under systems/)", given.display())
}

/// Where a bare program name is found through PATH; None when it is not installed.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return db::is_executable(path).then(|| path.to_path_buf());
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| db::is_executable(p)))
}

/// The binaries of `install.binaries` that are missing (a bare name through PATH, an absolute
/// path as a file), with the package to install for each.
pub fn missing_binaries(file: &SystemFile) -> Vec<(String, String)> {
    file.install
        .binaries
        .iter()
        .filter(|(binary, _)| {
            if binary.starts_with('/') {
                !Path::new(binary.as_str()).is_file()
            } else {
                find_program(binary).is_none()
            }
        })
        .map(|(binary, package)| (binary.clone(), package.clone()))
        .collect()
}

/// A system under test from a system file.
pub struct FileDb {
    system: System,
    options: BTreeMap<String, String>,
    op_timeout: Duration,
    /// Nodes started at least once (a later start is a restart).
    started: Mutex<HashSet<NodeId>>,
    /// The built-in etcd adapter, for its client and leader discovery.
    etcd: Option<crate::systems::etcd::EtcdDb>,
    clients_made: AtomicUsize,
}

impl FileDb {
    /// Loads and checks the file, resolves the options and checks that what the file needs is
    /// installed, all before any cluster exists.
    pub fn open(path: &Path, option_pairs: &str, op_timeout: Duration) -> Result<FileDb> {
        let path = resolve_system_path(path)?;
        let system = faultline_sysfile::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let pairs = faultline_sysfile::parse_option_pairs(option_pairs).map_err(anyhow::Error::msg)?;
        let options = system.file.resolve_options(&pairs).map_err(anyhow::Error::msg)?;
        let missing = missing_binaries(&system.file);
        if !missing.is_empty() {
            let binaries: Vec<&str> = missing.iter().map(|(b, _)| b.as_str()).collect();
            let packages: Vec<&str> = missing.iter().map(|(_, p)| p.as_str()).collect();
            bail!(
                "system `{}` needs {} on PATH: install with `apt-get install -y {}`",
                system.file.name,
                binaries.join(", "),
                packages.join(" ")
            );
        }
        let etcd = match system.file.client.kind {
            ClientKind::Etcd => Some(etcd_adapter(&system.file, &options, op_timeout)?),
            _ => None,
        };
        Ok(FileDb {
            system,
            options,
            op_timeout,
            started: Mutex::new(HashSet::new()),
            etcd,
            clients_made: AtomicUsize::new(0),
        })
    }

    fn facts(&self, cluster: &Cluster) -> Facts {
        Facts {
            run_id: cluster.run_id.clone(),
            run_dir: cluster.run_dir.clone(),
            system_dir: self.system.dir.clone(),
            addresses: cluster.node_ids().into_iter().map(|n| cluster.node_address(n).to_string()).collect(),
            options: self.options.clone(),
        }
    }

    fn node_context(&self, cluster: &Cluster, node: NodeId, first_boot: bool) -> Result<faultline_sysfile::Context> {
        self.system.file.node_context(&self.facts(cluster), node, first_boot).map_err(anyhow::Error::msg)
    }

    /// Where process `index` of a node writes its output.
    fn process_log(&self, cluster: &Cluster, node: NodeId, index: usize) -> Result<PathBuf> {
        let process = &self.system.file.processes[index];
        if let Some(log) = &process.log {
            let context = self.node_context(cluster, node, false)?;
            return Ok(PathBuf::from(SystemFile::render(log, &context)?));
        }
        Ok(if index == 0 {
            db::node_log_path(cluster, node)
        } else {
            cluster.run_dir.join(format!("{}.{}.log", node_name(node), process.name))
        })
    }

    fn render_files(&self, context: &faultline_sysfile::Context, node: NodeId, first_boot: bool) -> Result<()> {
        for spec in &self.system.file.files {
            if !spec.nodes.includes(node) || (spec.when == When::FirstBoot && !first_boot) {
                continue;
            }
            let path = PathBuf::from(SystemFile::render(&spec.path, context)?);
            let text = SystemFile::render(&spec.template, context)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Waits until the node answers as the file says, within its `ready.timeout_s`.
    fn wait_ready(&self, cluster: &Cluster, node: NodeId, context: &faultline_sysfile::Context) -> Result<()> {
        let ready = &self.system.file.ready;
        let timeout = Duration::from_secs_f64(ready.timeout_s);
        let deadline = Instant::now() + timeout;
        let addresses: Vec<SocketAddr> = ready
            .tcp
            .iter()
            .map(|t| Ok(SystemFile::render(t, context)?.parse::<SocketAddr>()?))
            .collect::<Result<_>>()?;
        let command = match &ready.command {
            Some(parts) => Some(SystemFile::render_command(parts, context)?),
            None => None,
        };
        let bridge = cluster.bridge_namespace();
        let mut last_error = String::new();
        let ready_now = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<bool> {
                    cluster.enter_client_namespace()?;
                    loop {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        let probe = remaining.min(Duration::from_millis(500)).max(Duration::from_millis(10));
                        let tcp_ok =
                            addresses.iter().all(|address| match crate::systems::net::connect(*address, probe) {
                                Ok(_) => true,
                                Err(e) => {
                                    last_error = format!("{address}: {e}");
                                    false
                                }
                            });
                        let command_ok = tcp_ok
                            && match &command {
                                None => true,
                                Some(argv) => match run_command(&bridge, argv, probe.max(Duration::from_secs(2))) {
                                    Ok(_) => true,
                                    Err(e) => {
                                        last_error = format!("{e:#}");
                                        false
                                    }
                                },
                            };
                        if command_ok {
                            return Ok(true);
                        }
                        if Instant::now() >= deadline {
                            return Ok(false);
                        }
                        if !cluster.node_running(node) {
                            last_error = "its processes exited".to_string();
                            return Ok(false);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the readiness thread panicked")))
        })?;
        if !ready_now {
            let mut tails = String::new();
            for path in self.log_paths(cluster, node) {
                tails.push_str(&format!("\n--- last lines of {} ---\n{}", path.display(), log_tail(&path, 20)));
            }
            bail!("{} did not become ready within {timeout:?} (last: {last_error}){tails}", node_name(node));
        }
        Ok(())
    }

    /// Runs the file's leader command with each node's placeholders in turn until one names a
    /// node. Called from the client namespace.
    fn leader_by_command(&self, cluster: &Cluster, spec: &faultline_sysfile::CommandSpec) -> Option<NodeId> {
        let timeout = Duration::from_secs_f64(spec.timeout_s);
        for node in cluster.node_ids() {
            let Ok(context) = self.node_context(cluster, node, false) else { continue };
            let Ok(argv) = SystemFile::render_command(&spec.command, &context) else { continue };
            let Ok(output) = run_command(&cluster.bridge_namespace(), &argv, timeout) else { continue };
            if let Some(leader) = parse_node_reference(cluster, output.lines().next().unwrap_or("")) {
                return Some(leader);
            }
        }
        None
    }
}

/// The etcd adapter: the built-in `EtcdDb`, used only for its client and its leader discovery.
fn etcd_adapter(
    file: &SystemFile,
    options: &BTreeMap<String, String>,
    op_timeout: Duration,
) -> Result<crate::systems::etcd::EtcdDb> {
    if file.client.port != Some(crate::systems::etcd::CLIENT_PORT) {
        bail!("the built-in etcd client speaks to port {}: set client.port to it", crate::systems::etcd::CLIENT_PORT);
    }
    let reads = match &file.client.reads {
        Some(template) => {
            let facts = Facts {
                run_id: String::new(),
                run_dir: PathBuf::new(),
                system_dir: PathBuf::new(),
                addresses: Vec::new(),
                options: options.clone(),
            };
            let context = file.run_context(&facts).map_err(anyhow::Error::msg)?;
            SystemFile::render(template, &context)?
        }
        None => "linearizable".to_string(),
    };
    let read_consistency = match reads.as_str() {
        "linearizable" => crate::systems::etcd::ReadConsistency::Linearizable,
        "serializable" => crate::systems::etcd::ReadConsistency::Serializable,
        other => bail!("client.reads of an etcd client is linearizable or serializable, not `{other}`"),
    };
    // Only the client and leader discovery are used; the file starts the members itself.
    let args = crate::systems::etcd::EtcdArgs { read_consistency, ..Default::default() };
    crate::systems::etcd::EtcdDb::new(&args, op_timeout)
}

/// A node named by a command: `n3`, its address, or `address:port`.
pub fn parse_node_reference(cluster: &Cluster, text: &str) -> Option<NodeId> {
    let text = text.trim();
    if let Some(index) = text.strip_prefix('n').and_then(|i| i.parse::<usize>().ok()) {
        return cluster.node_ids().contains(&index).then_some(index);
    }
    let address: IpAddr = text.parse().ok().or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))?;
    cluster.node_ids().into_iter().find(|node| IpAddr::V4(cluster.node_address(*node)) == address)
}

/// Runs `argv` in a namespace with a timeout; its stdout, or an error quoting its stderr.
pub fn run_command(namespace: &str, argv: &[String], timeout: Duration) -> Result<String> {
    let (program, args) = argv.split_first().context("an empty command")?;
    let handle = crate::netns::NamespaceHandle::open(namespace)?;
    let mut command = Command::new(program);
    command.args(args);
    handle.configure_command(&mut command)?;
    crate::netns::run(command, b"", timeout)
}

/// The last `lines` lines of a file (a log's tail for an error message).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Db for FileDb {
    fn name(&self) -> String {
        self.system.file.name.clone()
    }

    fn describe(&self) -> Value {
        json!({"name": self.name(), "system_file": self.system.path, "description": self.system.file.description,
               "options": self.options, "client": self.system.file.client.kind.name(),
               "op_timeout_ms": self.op_timeout.as_millis() as u64})
    }

    fn setup(&self, cluster: &Cluster) -> Result<()> {
        for node in cluster.node_ids() {
            let data = node_dir(cluster, node).join("data");
            std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        }
        // Every template renders with the real cluster too, before any process starts.
        for node in cluster.node_ids() {
            self.node_context(cluster, node, true)?;
        }
        Ok(())
    }

    fn start(&self, cluster: &Cluster, node: NodeId) -> Result<()> {
        let first_boot = self.started.lock().unwrap().insert(node);
        let context = self.node_context(cluster, node, first_boot)?;
        self.render_files(&context, node, first_boot)?;
        for (index, process) in self.system.file.processes.iter().enumerate() {
            let parts = match (&process.restart_command, first_boot) {
                (Some(restart), false) => restart,
                _ => &process.command,
            };
            let argv = SystemFile::render_command(parts, &context)?;
            let env: Vec<(String, String)> = process
                .env
                .iter()
                .map(|(name, value)| Ok((name.clone(), SystemFile::render(value, &context)?)))
                .collect::<Result<_>>()?;
            let program = find_program(&argv[0]).unwrap_or_else(|| PathBuf::from(&argv[0]));
            let log_path = self.process_log(cluster, node, index)?;
            let launch = Launch {
                label: (index > 0).then_some(process.name.as_str()),
                program: &program,
                args: &argv[1..],
                env: &env,
                working_dir: &node_dir(cluster, node),
                log_path: &log_path,
            };
            cluster
                .spawn_in_node(node, &launch, index > 0)
                .with_context(|| format!("starting process `{}` of {}", process.name, node_name(node)))?;
        }
        // A restart is not waited for: a node that does not come back is the system's behaviour
        // (seen in the history and the node-crashes check), not the harness's failure.
        if first_boot {
            self.wait_ready(cluster, node, &context)?;
        }
        Ok(())
    }

    fn log_paths(&self, cluster: &Cluster, node: NodeId) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> =
            (0..self.system.file.processes.len()).filter_map(|i| self.process_log(cluster, node, i).ok()).collect();
        if let Ok(context) = self.node_context(cluster, node, false) {
            paths.extend(
                self.system.file.logs.iter().filter_map(|l| SystemFile::render(l, &context).ok()).map(PathBuf::from),
            );
        }
        paths
    }

    fn leader(&self, cluster: &Cluster) -> Option<NodeId> {
        if let Some(spec) = &self.system.file.leader {
            return self.leader_by_command(cluster, spec);
        }
        self.etcd.as_ref().and_then(|etcd| etcd.leader(cluster))
    }

    fn has_leader(&self) -> bool {
        self.system.file.leader.is_some() || self.etcd.is_some()
    }

    fn new_client(&self, cluster: &Cluster) -> Box<dyn Client> {
        let number = self.clients_made.fetch_add(1, Ordering::SeqCst) + 1;
        let client = &self.system.file.client;
        match client.kind {
            ClientKind::Etcd => self.etcd.as_ref().expect("made in open").new_client(cluster),
            ClientKind::Redis => Box::new(RedisClient::new(cluster, client, self.op_timeout)),
            ClientKind::Stdio => {
                Box::new(StdioClient::new(cluster, &self.system.file, self.facts(cluster), number, self.op_timeout))
            }
        }
    }

    fn supports(&self, workload: WorkloadKind) -> bool {
        self.system.file.supports(workload.name())
    }

    fn digests(&self) -> Option<&dyn StateDigests> {
        self.system.file.digest.is_some().then_some(self as &dyn StateDigests)
    }
}

impl StateDigests for FileDb {
    fn state_digest(&self, cluster: &Cluster, node: NodeId) -> Result<crate::convergence::ReplicaState> {
        let spec = self.system.file.digest.as_ref().context("the system file has no [digest]")?;
        let context = self.node_context(cluster, node, false)?;
        let argv = SystemFile::render_command(&spec.command, &context)?;
        let output = run_command(&cluster.bridge_namespace(), &argv, Duration::from_secs_f64(spec.timeout_s))?;
        let mut words = output.split_whitespace();
        let applied_index = words.next().context("the digest command printed nothing")?.parse::<u64>()?;
        let digest = words.next().unwrap_or("").to_string();
        Ok(crate::convergence::ReplicaState {
            applied_index,
            digest,
            applied_hashes_first: 0,
            applied_hashes: Vec::new(),
        })
    }
}
