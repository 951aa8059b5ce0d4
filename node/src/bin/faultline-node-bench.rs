//! Load generator for faultline-node: N concurrent clients, each with its own
//! session, doing writes (or linearizable reads) for a fixed time. Prints one JSON
//! line with throughput and latency percentiles of the successful operations.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use faultline_node::client::{Client, ClientOptions, Outcome};
use faultline_node::store::Op;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "faultline-node-bench")]
struct Cli {
    /// Client addresses of the nodes, comma-separated.
    #[arg(long)]
    nodes: String,
    #[arg(long, default_value_t = 64)]
    clients: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// write | read
    #[arg(long, default_value = "write")]
    mode: String,
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// First client id; runs must not reuse each other's sessions.
    #[arg(long, default_value_t = 1)]
    client_id_base: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let nodes: Vec<String> = cli.nodes.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    anyhow::ensure!(!nodes.is_empty(), "--nodes is empty");
    anyhow::ensure!(cli.mode == "write" || cli.mode == "read", "--mode is write or read");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("tokio runtime")?;
    runtime.block_on(async move {
        let stop_at = Instant::now() + Duration::from_secs(cli.seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..cli.clients {
            let mut options = ClientOptions::new(nodes.clone(), cli.client_id_base + c);
            options.op_timeout = Duration::from_secs(10);
            let mut client = Client::new(options);
            let (mode, keys) = (cli.mode.clone(), cli.keys);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut failed, mut indefinite) = (0u64, 0u64);
                let mut n = 0u64;
                while Instant::now() < stop_at {
                    n += 1;
                    let key = format!("k{}", (c * 7919 + n) % keys);
                    let op = if mode == "write" { Op::Write { key, value: json!(n) } } else { Op::Read { key } };
                    let t0 = Instant::now();
                    match client.execute(op).await {
                        Outcome::Ok(_) => latencies.push(t0.elapsed()),
                        Outcome::Fail(_) => failed += 1,
                        Outcome::Info(_) => indefinite += 1,
                    }
                }
                (latencies, failed, indefinite)
            }));
        }
        let mut all = Vec::new();
        let (mut failed, mut indefinite) = (0, 0);
        for t in tasks {
            let (l, f, i) = t.await.context("client task")?;
            all.extend(l);
            failed += f;
            indefinite += i;
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort();
        let line = json!({
            "mode": cli.mode,
            "clients": cli.clients,
            "seconds": elapsed,
            "ok": all.len(),
            "fail": failed,
            "info": indefinite,
            "ops_per_sec": all.len() as f64 / elapsed,
            "latency_ms_p50": percentile(&all, 0.50),
            "latency_ms_p99": percentile(&all, 0.99),
            "latency_ms_max": percentile(&all, 1.0),
        });
        println!("{line}");
        Ok(())
    })
}
