//! A cluster of network namespaces for one run:
//!
//! ```text
//!   fl-<run>-br  (bridge namespace): br0 10.77.X.254/24  <- clients and harness threads live here
//!     |-- n1 <veth> eth0 10.77.X.1 in fl-<run>-n1
//!     |-- n2 <veth> eth0 10.77.X.2 in fl-<run>-n2  ...
//! ```
//!
//! The harness reaches the nodes by moving its client threads into the bridge namespace
//! (`setns` is per thread), so the root namespace gets no address, route or rule at all. Each node
//! namespace has an iptables chain `FAULTLINE` jumped to from INPUT and OUTPUT; partitions are
//! rules in it, and healing is one flush.
//!
//! **Invariant:** the root namespace's firewall and links are never changed; every process this
//! module starts is recorded in the run's state file before anything can lose track of it.

pub mod state;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::netns::{self, NamespaceHandle};
use state::RunState;

/// Nodes are numbered from 1, like their addresses and names (n1, n2, ...).
pub type NodeId = usize;

/// The most nodes a run may have (addresses .1 to .N, the client side is .254).
pub const MAX_NODES: usize = 64;

/// The chain that holds every fault rule in a node namespace.
pub const FAULT_CHAIN: &str = "FAULTLINE";

/// How long a SIGKILLed node may take to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// One process of a node.
struct NodeProcess {
    /// Its name among the node's processes (None for a node's only process).
    label: Option<String>,
    child: Child,
}

/// What to start in a node's namespace.
pub struct Launch<'a> {
    /// Its name among the node's processes, recorded in the run's state file as `nN.LABEL`.
    pub label: Option<&'a str>,
    pub program: &'a Path,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub working_dir: &'a Path,
    /// Where stdout and stderr are appended.
    pub log_path: &'a Path,
}

pub fn node_name(node: NodeId) -> String {
    format!("n{node}")
}

pub struct Cluster {
    pub run_id: String,
    pub n_nodes: usize,
    pub subnet_octet: u8,
    pub run_dir: PathBuf,
    state: Mutex<RunState>,
    /// Each node's processes, in start order (most systems have one; a system file may start a
    /// server and its sidecars).
    processes: Mutex<BTreeMap<NodeId, Vec<NodeProcess>>>,
    destroyed: AtomicBool,
    /// Extra environment of each node's processes (libfaketime for clock faults, `src/clock.rs`).
    node_env: Mutex<BTreeMap<NodeId, Vec<(String, String)>>>,
}

impl Cluster {
    pub fn bridge_namespace(&self) -> String {
        format!("{}{}-br", state::NAMESPACE_PREFIX, self.run_id)
    }

    pub fn node_namespace(&self, node: NodeId) -> String {
        format!("{}{}-{}", state::NAMESPACE_PREFIX, self.run_id, node_name(node))
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        (1..=self.n_nodes).collect()
    }

    pub fn node_address(&self, node: NodeId) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet_octet, node as u8)
    }

    /// The address of the harness/client side, on the bridge.
    pub fn client_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet_octet, 254)
    }

    /// A second harness address on the bridge, for the nemesis's own questions to nodes (terms and
    /// roles), so that a fault that cuts the clients off a node does not blind the nemesis too.
    pub fn control_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet_octet, 253)
    }

    /// Creates namespaces, bridge, veths, addresses and fault chains for `n_nodes` nodes. On any
    /// failure everything created so far is removed before the error is returned.
    pub fn create(run_id: &str, n_nodes: usize, run_dir: &Path) -> Result<Cluster> {
        netns::check_prerequisites()?;
        if n_nodes == 0 || n_nodes > MAX_NODES {
            bail!("a cluster has 1 to {MAX_NODES} nodes, not {n_nodes}");
        }
        let preferred_octet = (fnv1a(run_id.as_bytes()) % 254 + 1) as u8;
        let subnet_octet = state::claim_subnet(run_id, preferred_octet)?;
        let harness_pid = std::process::id() as i32;
        let mut namespaces = vec![format!("{}{run_id}-br", state::NAMESPACE_PREFIX)];
        for node in 1..=n_nodes {
            namespaces.push(format!("{}{run_id}-{}", state::NAMESPACE_PREFIX, node_name(node)));
        }
        // Never adopt a namespace we did not create: a rollback would delete someone else's.
        if let Some(existing) = namespaces.iter().find(|name| netns::netns_path(name).exists()) {
            state::release_subnet(run_id, subnet_octet);
            bail!("namespace {existing} already exists; run `faultline cleanup` or pick another run id");
        }
        let run_state = RunState {
            run_id: run_id.to_string(),
            harness_pid,
            harness_start_ticks: state::process_start_ticks(harness_pid).unwrap_or(0),
            subnet_octet,
            run_dir: run_dir.to_path_buf(),
            namespaces,
            namespace_inodes: Vec::new(),
            node_pids: BTreeMap::new(),
            mounts: Vec::new(),
        };
        if let Err(e) = run_state.save() {
            state::release_subnet(run_id, subnet_octet);
            return Err(e);
        }
        let cluster = Cluster {
            run_id: run_id.to_string(),
            n_nodes,
            subnet_octet,
            run_dir: run_dir.to_path_buf(),
            state: Mutex::new(run_state),
            processes: Mutex::new(BTreeMap::new()),
            destroyed: AtomicBool::new(false),
            node_env: Mutex::new(BTreeMap::new()),
        };
        // On error `cluster` is dropped here, and its Drop removes whatever was half built.
        cluster.build().context("building the cluster's namespaces")?;
        Ok(cluster)
    }

    fn build(&self) -> Result<()> {
        let bridge = self.bridge_namespace();
        let mut root_lines = vec![format!("netns add {bridge}")];
        for node in self.node_ids() {
            root_lines.push(format!("netns add {}", self.node_namespace(node)));
        }
        // Both veth ends are created directly inside run-owned namespaces, so no interface
        // name ever appears in the root namespace (and parallel runs cannot collide on names).
        for node in self.node_ids() {
            root_lines.push(format!(
                "link add eth0 netns {} type veth peer name {} netns {bridge}",
                self.node_namespace(node),
                node_name(node)
            ));
        }
        netns::ip_batch(None, &root_lines)?;
        {
            let inodes: Vec<u64> = self.namespaces().iter().filter_map(|name| netns::namespace_inode(name)).collect();
            let mut run_state = self.state.lock().unwrap();
            run_state.namespace_inodes = inodes;
            run_state.save()?;
        }
        #[cfg(test)]
        if self.run_id.starts_with("xfail") {
            bail!("injected setup failure (test)");
        }

        let mut bridge_lines = vec![
            "link set lo up".to_string(),
            "link add br0 type bridge".to_string(),
            "link set br0 up".to_string(),
            format!("addr add {}/24 dev br0", self.client_address()),
            format!("addr add {}/24 dev br0", self.control_address()),
        ];
        for node in self.node_ids() {
            bridge_lines.push(format!("link set {} master br0 up", node_name(node)));
        }
        netns::ip_batch(Some(&bridge), &bridge_lines)?;

        // Node namespaces are independent: configure them in parallel (iptables is the slow part).
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = self
                .node_ids()
                .into_iter()
                .map(|node| scope.spawn(move || self.configure_node_namespace(node)))
                .collect();
            for handle in handles {
                handle.join().expect("namespace setup thread panicked")?;
            }
            Ok(())
        })
    }

    fn configure_node_namespace(&self, node: NodeId) -> Result<()> {
        let namespace = self.node_namespace(node);
        netns::ip_batch(
            Some(&namespace),
            &[
                "link set lo up".to_string(),
                format!("addr add {}/24 dev eth0", self.node_address(node)),
                "link set eth0 up".to_string(),
            ],
        )?;
        let rules =
            format!("*filter\n:{FAULT_CHAIN} - [0:0]\n-A INPUT -j {FAULT_CHAIN}\n-A OUTPUT -j {FAULT_CHAIN}\nCOMMIT\n");
        netns::run_in_namespace(&namespace, "iptables-restore", &[], rules.as_bytes())
            .with_context(|| format!("creating the {FAULT_CHAIN} chain in {namespace}"))?;
        Ok(())
    }

    /// Every namespace of the run, bridge first.
    pub fn namespaces(&self) -> Vec<String> {
        self.state.lock().unwrap().namespaces.clone()
    }

    /// Replaces the fault rules of one node with `rules` (iptables-restore lines without the
    /// table header, e.g. "-A FAULTLINE -s 10.77.3.2 -j DROP"). Atomic and idempotent.
    pub fn set_fault_rules(&self, node: NodeId, rules: &[String]) -> Result<()> {
        let mut script = format!("*filter\n-F {FAULT_CHAIN}\n");
        for rule in rules {
            script.push_str(rule);
            script.push('\n');
        }
        script.push_str("COMMIT\n");
        netns::run_in_namespace(&self.node_namespace(node), "iptables-restore", &["--noflush"], script.as_bytes())
            .with_context(|| format!("setting fault rules on {}", node_name(node)))?;
        Ok(())
    }

    /// `iptables -S FAULTLINE` in a node namespace.
    #[cfg(test)]
    pub fn fault_rules(&self, node: NodeId) -> Result<Vec<String>> {
        let output = netns::run_in_namespace(&self.node_namespace(node), "iptables", &["-S", FAULT_CHAIN], b"")?;
        Ok(output.lines().filter(|line| line.starts_with("-A")).map(str::to_string).collect())
    }

    /// Moves the calling thread into the bridge namespace, where every node is reachable.
    pub fn enter_client_namespace(&self) -> Result<()> {
        NamespaceHandle::open(&self.bridge_namespace())?.enter_current_thread()
    }

    /// Starts `program args` inside the node's namespace, in `working_dir`, appending stdout and
    /// stderr to `log_path`. Fails if the node already has a live process.
    pub fn spawn_node_process(
        &self,
        node: NodeId,
        program: &Path,
        args: &[String],
        working_dir: &Path,
        log_path: &Path,
    ) -> Result<i32> {
        let launch = Launch { label: None, program, args, env: &[], working_dir, log_path };
        self.spawn_in_node(node, &launch, false)
    }

    /// Starts one process of a node (`alongside`: next to the node's live processes, e.g. a
    /// sidecar; otherwise the node must have none). Every process of a node is killed, paused and
    /// resumed together.
    pub fn spawn_in_node(&self, node: NodeId, launch: &Launch, alongside: bool) -> Result<i32> {
        if self.destroyed.load(Ordering::SeqCst) {
            bail!("the cluster is torn down");
        }
        let mut processes = self.processes.lock().unwrap();
        let running = processes.entry(node).or_default();
        running.retain_mut(|process| matches!(process.child.try_wait(), Ok(None)));
        if !alongside && !running.is_empty() {
            bail!("{} already has a running process", node_name(node));
        }
        let working_dir = launch.working_dir;
        std::fs::create_dir_all(working_dir).with_context(|| format!("creating {}", working_dir.display()))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log_path)
            .with_context(|| format!("opening {}", launch.log_path.display()))?;
        let mut command = Command::new(launch.program);
        command.args(launch.args).current_dir(working_dir).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));
        // The node's own environment (the clock faults' libfaketime), set by the harness.
        command.envs(self.node_env.lock().unwrap().get(&node).cloned().unwrap_or_default());
        NamespaceHandle::open(&self.node_namespace(node))?.configure_command(&mut command)?;
        let child =
            command.spawn().with_context(|| format!("starting {} on {}", launch.program.display(), node_name(node)))?;
        let pid = child.id() as i32;
        let key = match launch.label {
            Some(label) => format!("{}.{label}", node_name(node)),
            None => node_name(node),
        };
        running.push(NodeProcess { label: launch.label.map(str::to_string), child });
        let mut run_state = self.state.lock().unwrap();
        run_state.node_pids.insert(key, pid);
        run_state.save()?;
        Ok(pid)
    }

    /// Sets the extra environment every later process of `node` starts with.
    pub fn set_node_env(&self, node: NodeId, env: Vec<(String, String)>) {
        self.node_env.lock().unwrap().insert(node, env);
    }

    /// Records a mount point in the state file before it is mounted, so teardown and `faultline
    /// cleanup` find it (`src/disk.rs`).
    pub fn record_mount(&self, mountpoint: &Path) -> Result<()> {
        let mut run_state = self.state.lock().unwrap();
        if !run_state.mounts.iter().any(|m| m == mountpoint) {
            run_state.mounts.push(mountpoint.to_path_buf());
        }
        run_state.save()
    }

    /// Drops a mount point from the state file once it is unmounted.
    pub fn forget_mount(&self, mountpoint: &Path) -> Result<()> {
        let mut run_state = self.state.lock().unwrap();
        run_state.mounts.retain(|m| m != mountpoint);
        run_state.save()
    }

    /// Sends `signal` to the process group of each of the node's processes (each is a group
    /// leader, started with `setsid`, so a wrapper's children get it too); false if the node has
    /// no live process.
    pub fn signal_node(&self, node: NodeId, signal: Signal) -> Result<bool> {
        let mut processes = self.processes.lock().unwrap();
        let Some(running) = processes.get_mut(&node) else {
            return Ok(false);
        };
        let mut signalled = false;
        for process in running.iter_mut() {
            if process.child.try_wait()?.is_some() {
                continue;
            }
            match nix::sys::signal::kill(Pid::from_raw(-(process.child.id() as i32)), signal) {
                Ok(()) => signalled = true,
                Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(e).with_context(|| format!("{signal} to {}", node_name(node))),
            }
        }
        Ok(signalled)
    }

    /// SIGKILLs the node's processes (their process groups) and reaps them. Killing a dead or
    /// absent process is fine.
    pub fn kill_node(&self, node: NodeId) -> Result<()> {
        let mut processes = self.processes.lock().unwrap();
        let running = processes.remove(&node).unwrap_or_default();
        for process in &running {
            let _ = nix::sys::signal::kill(Pid::from_raw(-(process.child.id() as i32)), Signal::SIGKILL);
        }
        for mut process in running {
            if netns::wait_with_timeout(&mut process.child, REAP_TIMEOUT)?.is_none() {
                bail!("{} did not die within {REAP_TIMEOUT:?} of SIGKILL", node_name(node));
            }
        }
        Ok(())
    }

    /// Is any of the node's processes alive (running or stopped)?
    pub fn node_running(&self, node: NodeId) -> bool {
        let mut processes = self.processes.lock().unwrap();
        processes
            .get_mut(&node)
            .is_some_and(|running| running.iter_mut().any(|p| matches!(p.child.try_wait(), Ok(None))))
    }

    /// Node processes that exited without being killed by us (a crash, an assertion, a refusal
    /// to start), with how they ended. Each exit is reported once.
    pub fn take_unexpected_exits(&self) -> Vec<(NodeId, String)> {
        let mut processes = self.processes.lock().unwrap();
        let mut exits = Vec::new();
        for (node, running) in processes.iter_mut() {
            running.retain_mut(|process| match process.child.try_wait() {
                Ok(Some(status)) => {
                    let what = match &process.label {
                        Some(label) => format!("{label}: {status}"),
                        None => status.to_string(),
                    };
                    exits.push((*node, what));
                    false
                }
                _ => true,
            });
        }
        processes.retain(|_, running| !running.is_empty());
        exits
    }

    /// Kills every process, deletes every namespace (and so every veth, the bridge and every
    /// rule), removes the state file. Idempotent; also run by Drop.
    pub fn destroy(&self) -> Result<()> {
        if self.destroyed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let started = Instant::now();
        let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        for process in processes.values().flatten() {
            let _ = nix::sys::signal::kill(Pid::from_raw(-(process.child.id() as i32)), Signal::SIGKILL);
        }
        for mut process in std::mem::take(&mut *processes).into_values().flatten() {
            let _ = netns::wait_with_timeout(&mut process.child, REAP_TIMEOUT);
        }
        let run_state = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let report = state::cleanup_run(&run_state);
        if !report.errors.is_empty() {
            bail!(
                "cleanup of run {} incomplete after {:?}: {}; run `faultline cleanup`",
                self.run_id,
                started.elapsed(),
                report.errors.join("; ")
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.destroy() {
            eprintln!("faultline: {e:#}");
        }
    }
}

/// A small stable hash, to spread runs over subnets.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in bytes {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::grudge;

    fn root() -> bool {
        let is_root = nix::unistd::geteuid().is_root();
        if !is_root {
            eprintln!("not root: skipping a test that needs network namespaces");
        }
        is_root
    }

    /// Tries a TCP connect from inside `namespace` to `address:port` with a short timeout.
    fn can_connect(namespace: &str, address: Ipv4Addr, port: u16) -> bool {
        let script = format!(
            "import socket,sys\ntry:\n socket.create_connection(('{address}',{port}),timeout=0.5)\nexcept Exception:\n sys.exit(1)"
        );
        netns::run_in_namespace(namespace, "python3", &["-c", &script], b"").is_ok()
    }

    #[test]
    fn five_node_cluster_is_built_fast_partitioned_healed_and_removed_completely() {
        if !root() || !netns::program_exists("python3") || netns::check_prerequisites().is_err() {
            return;
        }
        let run_dir = std::env::temp_dir().join(format!("faultline-cluster-test-{}", std::process::id()));
        std::fs::create_dir_all(&run_dir).unwrap();
        let run_id = format!("t{}", std::process::id() % 100_000);
        let started = Instant::now();
        let cluster = Cluster::create(&run_id, 5, &run_dir).unwrap();
        let setup = started.elapsed();
        assert!(setup < Duration::from_secs(1), "setup took {setup:?}");
        eprintln!("5-node setup: {setup:?}");
        let namespaces = cluster.namespaces();
        assert_eq!(namespaces.len(), 6);
        assert!(namespaces.iter().all(|n| netns::netns_path(n).exists()));

        // A TCP server in each of n1 and n2.
        for node in [1, 2] {
            let address = cluster.node_address(node).to_string();
            let args = vec![
                "-c".to_string(),
                format!(
                    "import socket\ns=socket.socket()\ns.bind(('{address}',7300))\ns.listen()\nwhile True: s.accept()"
                ),
            ];
            cluster
                .spawn_node_process(node, Path::new("python3"), &args, &run_dir, &run_dir.join(format!("n{node}.log")))
                .unwrap();
        }
        let ready = Instant::now();
        while !can_connect(&cluster.node_namespace(2), cluster.node_address(1), 7300) {
            assert!(ready.elapsed() < Duration::from_secs(5), "n2 never reached n1");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The client side reaches nodes through the bridge.
        assert!(can_connect(&cluster.bridge_namespace(), cluster.node_address(2), 7300));

        // Isolate n1: n2 cannot reach it, in either direction; the client side still can.
        let cut = grudge::isolate(&cluster.node_ids(), 1);
        for node in cluster.node_ids() {
            let rules = grudge::rules_for_node(node, &cut, &grudge::Loss::new(), |n| cluster.node_address(n));
            cluster.set_fault_rules(node, &rules).unwrap();
            // Idempotent: applying twice leaves the same rules.
            cluster.set_fault_rules(node, &rules).unwrap();
            assert_eq!(cluster.fault_rules(node).unwrap().len(), rules.len());
        }
        assert!(!can_connect(&cluster.node_namespace(2), cluster.node_address(1), 7300));
        assert!(!can_connect(&cluster.node_namespace(1), cluster.node_address(2), 7300));
        assert!(can_connect(&cluster.bridge_namespace(), cluster.node_address(1), 7300));

        // Heal is one flush per node.
        for node in cluster.node_ids() {
            cluster.set_fault_rules(node, &[]).unwrap();
            assert!(cluster.fault_rules(node).unwrap().is_empty());
        }
        assert!(can_connect(&cluster.node_namespace(2), cluster.node_address(1), 7300));

        // Pause and kill are idempotent.
        assert!(cluster.signal_node(1, Signal::SIGSTOP).unwrap());
        assert!(cluster.signal_node(1, Signal::SIGCONT).unwrap());
        cluster.kill_node(1).unwrap();
        cluster.kill_node(1).unwrap();
        assert!(!cluster.node_running(1));
        assert!(!cluster.signal_node(1, Signal::SIGCONT).unwrap());

        let pid_2 = cluster.state.lock().unwrap().node_pids["n2"];
        let state_path = cluster.state.lock().unwrap().path();
        drop(cluster);
        assert!(namespaces.iter().all(|n| !netns::netns_path(n).exists()));
        assert!(!Path::new(&format!("/proc/{pid_2}")).exists(), "n2's process survived");
        assert!(!state_path.exists());
        let _ = std::fs::remove_dir_all(&run_dir);
    }

    #[test]
    fn a_failed_setup_leaves_nothing_behind() {
        if !root() || netns::check_prerequisites().is_err() {
            return;
        }
        let run_dir = std::env::temp_dir().join(format!("faultline-rollback-test-{}", std::process::id()));
        let run_id = format!("r{}", std::process::id() % 100_000);
        // More nodes than a /24 can hold is refused before anything is created.
        assert!(Cluster::create(&run_id, MAX_NODES + 1, &run_dir).is_err());
        // A name clash in the middle of setup: n3's namespace exists already (someone else's).
        let clash = format!("{}{run_id}-n3", state::NAMESPACE_PREFIX);
        netns::ip_batch(None, &[format!("netns add {clash}")]).unwrap();
        let error = Cluster::create(&run_id, 5, &run_dir).err().expect("setup must fail");
        assert!(format!("{error:#}").contains("already exists"), "{error:#}");
        let leftovers: Vec<String> = netns::list_namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&format!("{}{run_id}-", state::NAMESPACE_PREFIX)))
            .collect();
        assert_eq!(leftovers, vec![clash.clone()], "only the foreign namespace may remain");
        netns::ip_batch(None, &[format!("netns del {clash}")]).unwrap();

        // A failure after the namespaces exist rolls all of them back, and the state file too.
        let run_id = format!("xfail{}", std::process::id() % 100_000);
        let error = Cluster::create(&run_id, 3, &run_dir).err().expect("setup must fail");
        assert!(format!("{error:#}").contains("injected"), "{error:#}");
        assert!(netns::list_namespaces().iter().all(|n| !n.contains(&run_id)));
        assert!(!state::state_dir().join(format!("{run_id}.json")).exists());
    }
}
