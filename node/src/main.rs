//! faultline-node: one node of a Raft-replicated key-value and event-log store.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 2 for bad arguments,
//! 1 when the node cannot start or its disk fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use faultline_node::bugs::{Bug, Bugs};
use faultline_node::server::{self, NodeOptions};

#[derive(Parser, Debug)]
#[command(
    name = "faultline-node",
    about = "A Raft-replicated key-value and event-log store (faultline's system under test)"
)]
struct Cli {
    /// This node's id (non-zero, unique in the cluster).
    #[arg(long, required_unless_present = "list_bugs")]
    id: Option<u64>,
    /// Address to listen on for clients and peers, e.g. 127.0.0.1:7001.
    #[arg(long, required_unless_present = "list_bugs")]
    listen: Option<SocketAddr>,
    /// The other nodes as id=addr,id=addr (this node may be listed too).
    #[arg(long, default_value = "")]
    peers: String,
    /// The initial voters as id,id,... (default: this node and every peer). A node
    /// listed in --peers but not here starts outside the cluster, to be added with
    /// add_learner and promote.
    #[arg(long)]
    voters: Option<String>,
    /// Directory for the write-ahead log and snapshots.
    #[arg(long, required_unless_present = "list_bugs")]
    data_dir: Option<PathBuf>,
    /// Plant a bug (repeatable); see --list-bugs.
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// Describe the plantable bugs and exit.
    #[arg(long)]
    list_bugs: bool,
    /// Serve leader reads from a lease instead of a ReadIndex quorum round.
    #[arg(long)]
    lease_reads: bool,
    /// Length of one Raft tick in milliseconds.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Election timeout in ticks (randomised between this and twice this).
    #[arg(long, default_value_t = 30)]
    election_ticks: u64,
    /// Heartbeat interval in ticks.
    #[arg(long, default_value_t = 5)]
    heartbeat_ticks: u64,
    /// How long a request may wait in the node before it answers `timeout`, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Snapshot and compact the log every this many applied entries.
    #[arg(long, default_value_t = 50_000)]
    snapshot_every: u64,
    /// How the cluster replicates: raft, or primary-copy (a baseline that loses acknowledged
    /// writes under partitions and kills; docs/replication.md). Give every node the same.
    #[arg(long, default_value = "raft")]
    replication: faultline_node::protocol::Replication,
}

/// Exit status of a node that stopped on a violated invariant (a panic on any thread).
const EXIT_PANIC: i32 = 101;

fn main() {
    // A panic on any thread stops the whole process: the Raft loop runs on a thread of its own,
    // and a node whose loop died but whose listener lives on would limp on (connections accepted,
    // never answered) instead of stopping where its invariant broke, and the harness could not
    // tell it from a slow node.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(EXIT_PANIC);
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if cli.list_bugs {
        for bug in Bug::ALL {
            println!("{:<20} {}", bug.name(), bug.description());
        }
        return;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let options = match options_from(&cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("faultline-node: {e:#}");
            std::process::exit(2);
        }
    };
    let id = options.id;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(server::run(options, shutdown_signal()));
    if let Err(e) = result {
        tracing::error!("node n{id}: {e:#}");
        eprintln!("faultline-node n{id}: {e:#}");
        std::process::exit(1);
    }
}

fn options_from(cli: &Cli) -> anyhow::Result<NodeOptions> {
    let id = cli.id.context("--id is required")?;
    anyhow::ensure!(id != 0, "--id must be non-zero");
    let listen = cli.listen.context("--listen is required")?;
    let mut peers = server::parse_peers(&cli.peers).context("parsing --peers")?;
    // This node's own entry, if listed, is how others (and clients) reach it.
    let advertise = peers.remove(&id).unwrap_or_else(|| listen.to_string());
    let data_dir = cli.data_dir.clone().context("--data-dir is required")?;
    let bugs = cli.bugs.iter().map(|b| b.parse::<Bug>()).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(cli.heartbeat_ticks < cli.election_ticks, "--heartbeat-ticks must be below --election-ticks");
    let voters = match &cli.voters {
        Some(text) => Some(
            text.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| t.parse::<u64>().with_context(|| format!("voter id {t:?} is not a number")))
                .collect::<anyhow::Result<Vec<u64>>>()?,
        ),
        None => None,
    };
    let mut options = NodeOptions::new(id, listen, peers, data_dir);
    options.advertise = advertise;
    options.voters = voters;
    options.bugs = Bugs::from_list(bugs);
    options.lease_reads = cli.lease_reads;
    options.tick = Duration::from_millis(cli.tick_ms.max(1));
    options.election_timeout_ticks = cli.election_ticks;
    options.heartbeat_interval_ticks = cli.heartbeat_ticks.max(1);
    options.request_timeout = Duration::from_millis(cli.request_timeout_ms);
    options.snapshot_every_entries = cli.snapshot_every.max(1);
    options.replication = cli.replication;
    Ok(options)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
