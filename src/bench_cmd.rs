//! `faultline bench`: one closed-loop load generator for either store. It builds a healthy cluster
//! exactly as `faultline test` does (one node per network namespace, a bridge, clients in the bridge
//! namespace; no nemesis), starts faultline-node or etcd through the same `Db` trait, and runs
//! `--clients` threads, each with its own `Client` from `Db::new_client` and a home node
//! (client i -> node i mod n + 1), issuing one operation after another for `--duration`. The
//! first second is warm-up and is not measured. Reported: ok ops/s, p50/p99/max latency of ok ops,
//! fail/info counts; as text on stdout and as JSON (`--json FILE`, or `--json -` for stdout).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::systems::{Completion, Db, Invocation};

const WARM_UP: Duration = Duration::from_secs(1);

/// Sleeps `duration`, or less if interrupted.
fn sleep_unless_interrupted(duration: Duration) {
    let end = Instant::now() + duration;
    while !crate::lifecycle::INTERRUPTED.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())));
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Writes only.
    Write,
    /// Reads only (every key is written once before the measurement).
    Read,
    /// Half reads, half writes.
    Mixed,
}

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct BenchArgs {
    /// The system under test (`--db`, `--node-bin`, `--etcd-*`; src/systems/).
    #[command(flatten)]
    pub system: crate::systems::SystemArgs,
    /// Concurrent closed-loop clients (one thread each, one op outstanding each).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    #[arg(long, value_enum, default_value_t = Mix::Mixed)]
    pub mix: Mix,
    /// Bytes per written value (a JSON string of this many characters).
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// How long to run, warm-up included (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub duration: Duration,
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Keys the load is spread over.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Client timeout per operation, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub op_timeout_ms: u64,
    /// Where the nodes' data and logs go (default: a fresh directory under the temp dir, removed
    /// after a clean run).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write the result as JSON to this file (`-` for stdout, after the text).
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn serialize_duration<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

pub fn run(args: BenchArgs) -> crate::exit::Exit {
    match bench(&args) {
        Ok(()) => crate::exit::Exit::Valid,
        Err(e) => {
            eprintln!("faultline bench: harness failure: {e:#}");
            crate::exit::Exit::HarnessFailure
        }
    }
}

/// What one client measured after the warm-up.
#[derive(Default)]
struct ClientStats {
    latencies_us: Vec<u64>,
    fail: u64,
    info: u64,
    first_error: Option<String>,
}

/// Latency percentiles over sorted microseconds (nearest rank).
fn percentile_us(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn bench_key(index: u64) -> Value {
    json!(format!("b{index}"))
}

fn bench(args: &BenchArgs) -> Result<()> {
    if args.clients == 0 || args.nodes == 0 || args.keys == 0 || args.duration <= WARM_UP {
        bail!("--clients, --nodes and --keys must be positive and --duration longer than the 1 s warm-up");
    }
    crate::netns::check_prerequisites()?;
    let db = crate::systems::build(&args.system, Duration::from_millis(args.op_timeout_ms))?;
    crate::lifecycle::install_signal_thread("faultline bench")?;
    let run_id = crate::lifecycle::make_run_id("bench");
    let (run_dir, remove_after) = match &args.dir {
        Some(dir) => (dir.join(&run_id), false),
        None => (std::env::temp_dir().join(format!("faultline-bench-{run_id}")), true),
    };
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let cluster = Cluster::create(&run_id, args.nodes, &run_dir)?;
    let result = (|| -> Result<Value> {
        db.setup(&cluster)?;
        for node in cluster.node_ids() {
            db.start(&cluster, node)?;
        }
        measure(args, db.as_ref(), &cluster)
    })();
    let teardown = db.teardown(&cluster).and_then(|_| cluster.destroy());
    let result = result?;
    teardown?;
    if crate::lifecycle::INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; the cluster was torn down");
    }
    if remove_after {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    let latency = &result["latency_ms"];
    println!(
        "{:<15} clients {:>4}  mix {:<6} value {:>5} B  {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  \
         fail {} info {}",
        result["db"].as_str().unwrap_or(""),
        args.clients,
        result["mix"].as_str().unwrap_or(""),
        args.value_size,
        result["ops_per_second"].as_f64().unwrap_or(0.0),
        latency["p50"].as_f64().unwrap_or(0.0),
        latency["p99"].as_f64().unwrap_or(0.0),
        latency["max"].as_f64().unwrap_or(0.0),
        result["fail"],
        result["info"],
    );
    if let Some(first_error) = result["first_error"].as_str() {
        println!("  first error: {first_error}");
    }
    match args.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => println!("{}", serde_json::to_string_pretty(&result)?),
        Some(path) => std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
        None => {}
    }
    Ok(())
}

/// Waits for a leader (bounded), fills the keys for read loads, runs the clients, aggregates.
fn measure(args: &BenchArgs, db: &dyn Db, cluster: &Cluster) -> Result<Value> {
    let value = json!("x".repeat(args.value_size));
    let op_timeout = Duration::from_millis(args.op_timeout_ms);
    let leader = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<Option<usize>> {
                cluster.enter_client_namespace()?;
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline && !crate::lifecycle::INTERRUPTED.load(Ordering::SeqCst) {
                    if let Some(leader) = db.leader(cluster) {
                        return Ok(Some(leader));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(None)
            })
            .join()
            .unwrap_or_else(|_| bail!("leader wait panicked"))
    })?;
    let Some(leader) = leader else {
        bail!("no leader within 20 s of starting {} (see the node logs in {})", db.name(), cluster.run_dir.display());
    };
    if args.mix != Mix::Write {
        // Read loads read real values: write every key once, a few clients in parallel.
        let fillers = 8.min(args.keys as usize);
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..fillers)
                .map(|filler| {
                    let value = value.clone();
                    scope.spawn(move || -> Result<()> {
                        cluster.enter_client_namespace()?;
                        let mut client = db.new_client(cluster);
                        client.open(filler % cluster.n_nodes + 1)?;
                        for key in (filler as u64..args.keys).step_by(fillers) {
                            let invocation =
                                Invocation { f: "write".to_string(), key: Some(bench_key(key)), value: value.clone() };
                            let deadline = Instant::now() + op_timeout * 5;
                            // A fill write may need a retry while a connection warms up.
                            while !matches!(client.invoke(&invocation), Completion::Ok(_)) {
                                if Instant::now() > deadline {
                                    bail!("could not write key {key} before the measurement");
                                }
                            }
                        }
                        client.close();
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap_or_else(|_| bail!("a filler panicked"))?;
            }
            Ok(())
        })?;
    }

    let stop = AtomicBool::new(false);
    let ready = Barrier::new(args.clients + 1);
    let stats: Vec<ClientStats> = std::thread::scope(|scope| -> Result<Vec<ClientStats>> {
        let mut handles = Vec::new();
        for index in 0..args.clients {
            let (stop, ready, value) = (&stop, &ready, value.clone());
            let handle = std::thread::Builder::new()
                .name(format!("bench-{index}"))
                .stack_size(256 << 10)
                .spawn_scoped(scope, move || -> Result<ClientStats> {
                    let prepared =
                        cluster.enter_client_namespace().map(|_| db.new_client(cluster)).and_then(|mut c| {
                            c.open(index % cluster.n_nodes + 1)?;
                            Ok(c)
                        });
                    ready.wait();
                    let mut client = prepared?;
                    let mut rng = StdRng::seed_from_u64(args.seed ^ (index as u64).wrapping_mul(0x9e3779b97f4a7c15));
                    let mut stats = ClientStats::default();
                    let measure_from = Instant::now() + WARM_UP;
                    while !stop.load(Ordering::Relaxed) {
                        let key = Some(bench_key(rng.gen_range(0..args.keys)));
                        let is_read = match args.mix {
                            Mix::Write => false,
                            Mix::Read => true,
                            Mix::Mixed => rng.gen_bool(0.5),
                        };
                        let invocation = if is_read {
                            Invocation { f: "read".to_string(), key, value: Value::Null }
                        } else {
                            Invocation { f: "write".to_string(), key, value: value.clone() }
                        };
                        let started = Instant::now();
                        let completion = client.invoke(&invocation);
                        if started < measure_from || stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        match completion {
                            Completion::Ok(_) => stats.latencies_us.push(started.elapsed().as_micros() as u64),
                            Completion::Fail(e) => {
                                stats.fail += 1;
                                stats.first_error.get_or_insert(e);
                            }
                            Completion::Info(e) | Completion::Abort(e) => {
                                stats.info += 1;
                                stats.first_error.get_or_insert(e);
                            }
                        }
                    }
                    client.close();
                    Ok(stats)
                })
                .context("spawning a bench client")?;
            handles.push(handle);
        }
        ready.wait();
        sleep_unless_interrupted(args.duration);
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| bail!("a bench client panicked"))).collect()
    })?;

    let measured_s = (args.duration - WARM_UP).as_secs_f64();
    let mut latencies: Vec<u64> = stats.iter().flat_map(|s| s.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(json!({
        "db": db.name(),
        "db_details": db.describe(),
        "setup": format!("{} nodes, one per network namespace, clients in the bridge namespace (as faultline test)", cluster.n_nodes),
        "leader_at_start": format!("n{leader}"),
        "clients": args.clients,
        "mix": args.mix,
        "value_size_bytes": args.value_size,
        "keys": args.keys,
        "duration_s": args.duration.as_secs_f64(),
        "measured_s": measured_s,
        "ok": latencies.len(),
        "fail": stats.iter().map(|s| s.fail).sum::<u64>(),
        "info": stats.iter().map(|s| s.info).sum::<u64>(),
        "first_error": stats.iter().find_map(|s| s.first_error.clone()),
        "ops_per_second": latencies.len() as f64 / measured_s,
        "latency_ms": {
            "p50": ms(percentile_us(&latencies, 50.0)),
            "p99": ms(percentile_us(&latencies, 99.0)),
            "max": ms(latencies.last().copied().unwrap_or(0)),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_us(&sorted, 50.0), 50);
        assert_eq!(percentile_us(&sorted, 99.0), 99);
        assert_eq!(percentile_us(&sorted, 100.0), 100);
        assert_eq!(percentile_us(&[7], 99.0), 7);
        assert_eq!(percentile_us(&[], 50.0), 0);
    }
}
