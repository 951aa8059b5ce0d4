//! `faultline test`: build a cluster in network namespaces, run client workers and a nemesis
//! against it, store the history as it goes, heal, recover, read every key, check, clean up.
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown, 3 vacuous (nothing was really tested), 4 harness
//! failure or interrupted. A harness failure is never reported as a finding about the system.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use faultline_checker::history::{OpType, Record};
use faultline_workloads::CheckerReport;
use nix::sys::signal::{SigSet, Signal};
use serde::Serialize;
use serde_json::json;

use crate::cluster::{fnv1a, Cluster, NodeId};
use crate::db::{self, Db, FaultlineNodeDb, ToyDb};
use crate::generator::{Rate, TimeLimit, UntilSet};
use crate::interpreter::Interpreter;
use crate::nemesis::grudge::Shape;
use crate::nemesis::{self, Family, Nemesis, NemesisOptions, TargetSpec};
use crate::online::OnlineReport;
use crate::run_store::{self, HistoryLog, RunLog};

pub const EXIT_VALID: i32 = 0;
pub const EXIT_INVALID: i32 = 1;
pub const EXIT_UNKNOWN: i32 = 2;
pub const EXIT_VACUOUS: i32 = 3;
pub const EXIT_HARNESS_FAILURE: i32 = 4;

/// Set by SIGINT/SIGTERM/SIGHUP: stop issuing ops, heal, clean up, exit.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(clap::Args, Debug, Clone, Serialize)]
// A later option overrides an earlier one, so scripts can pass defaults and callers extras.
#[command(args_override_self = true)]
pub struct TestArgs {
    /// Name of the test; the run is stored under <store>/<name>/<timestamp>/. Default: the
    /// workload's name.
    #[arg(long)]
    pub name: Option<String>,
    /// The system under test: faultline-node, or toy (a single-copy Python register, for testing
    /// the harness itself).
    #[arg(long, default_value = "faultline-node")]
    pub db: String,
    /// A system described in a file (docs/systems.md): a system.toml, a folder holding one, or the
    /// name of a folder under systems/ (e.g. redis-sentinel). Replaces --db.
    #[arg(long, value_name = "PATH")]
    pub system: Option<PathBuf>,
    /// Options of the --system file, NAME=VALUE,NAME=VALUE (`faultline systems` lists them).
    #[arg(long, value_name = "NAME=VALUE,...")]
    pub system_options: Option<String>,
    /// Path of the faultline-node binary (default: next to this faultline binary, then PATH).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Start every node with this planted bug (e.g. stale-read, ack-before-commit).
    #[arg(long)]
    pub bug: Option<String>,
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Client workers (default: 2 x nodes).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Total operations per second over all workers.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of load before the final heal, recovery and reads.
    #[arg(long, default_value_t = 60)]
    pub time_limit: u64,
    /// Fault families, comma-separated: partition, kill, pause, loss, isolated-pause (isolate the
    /// leader, pause it, resume it while still isolated, heal), crash (kill and restart at once,
    /// down for at most 200 ms), figure-8 (Raft's Figure 8 as partitions timed by watching terms
    /// and roles; for 3-node clusters), restart-voter (a scripted double vote by a restarted voter;
    /// for 5-node clusters); "none"; or "default": partition (every shape of
    /// --partition-shapes), isolated-pause, kill, crash, pause and, when the system reports its
    /// Raft state, figure-8 and restart-voter, one window at a time in a seeded rotation. A list
    /// runs each family on its own timeline, overlapping.
    #[arg(long, default_value = "default")]
    pub nemesis: String,
    /// Mean seconds between fault edges (for "default": the mean length of a fault window).
    #[arg(long, default_value_t = 3.0)]
    pub nemesis_interval: f64,
    /// Targets for kill, pause and loss: one, minority, majority, all, leader.
    #[arg(long, default_value = "one,minority,majority,leader")]
    pub nemesis_targets: String,
    /// Partition shapes: halves, random-halves, majorities-ring, bridge, isolate-one,
    /// isolate-leader, one-way.
    #[arg(long, default_value = "halves,random-halves,majorities-ring,bridge,isolate-one,isolate-leader,one-way")]
    pub partition_shapes: String,
    /// Seed for the workload, the nemesis schedule and its targets (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The workload (`--workload`, `--workers-per-key`, `--ops-per-key`; src/workload_glue.rs).
    #[command(flatten)]
    #[serde(flatten)]
    pub workload: crate::workload_glue::WorkloadArgs,
    /// Client timeout per operation, in milliseconds; a timeout is recorded as info.
    #[arg(long, default_value_t = 1000)]
    pub op_timeout_ms: u64,
    /// Seconds to let the cluster recover after the final heal, before the final reads.
    #[arg(long, default_value_t = 5)]
    pub recovery: u64,
    /// Directory holding the runs.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// End the load as soon as the history so far is certainly not linearizable (checked every
    /// second while the run goes on), then heal, recover, read and check as usual.
    #[arg(long)]
    pub stop_on_invalid: bool,
    /// Options of `--db etcd` (src/etcd/, docs/etcd.md).
    #[command(flatten)]
    #[serde(flatten)]
    pub etcd: crate::etcd::EtcdArgs,
    /// Re-run a stored run with its options, seed and fault schedule (from <run-dir>/test.json);
    /// every other option given here is ignored. Real processes are not deterministic, so the
    /// replay may not reproduce the outcome.
    #[arg(long, value_name = "RUN_DIR")]
    #[serde(skip)]
    pub replay: Option<PathBuf>,
}

/// Wraps `TestArgs` so a stored run's options can be parsed back with clap's own rules.
#[derive(clap::Parser)]
struct StoredOptions {
    #[command(flatten)]
    args: TestArgs,
}

/// The command-line arguments that give back `options` (test.json's serialised `TestArgs`).
pub fn options_to_argv(options: &serde_json::Value) -> Result<Vec<String>> {
    let object = options.as_object().context("test.json: `options` is not an object")?;
    let mut argv = Vec::new();
    for (key, value) in object {
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            serde_json::Value::Null | serde_json::Value::Bool(false) => {}
            serde_json::Value::Bool(true) => argv.push(flag),
            serde_json::Value::String(text) => argv.extend([flag, text.clone()]),
            serde_json::Value::Number(number) => argv.extend([flag, number.to_string()]),
            other => bail!("test.json: option {key} has an unexpected value {other}"),
        }
    }
    Ok(argv)
}

/// What a replay takes from a stored run: its options (with its seed) and its fault schedule.
struct Replay {
    args: TestArgs,
    events: Option<Vec<nemesis::PlannedEvent>>,
}

fn load_replay(run_dir: &std::path::Path) -> Result<Replay> {
    let path = run_dir.join("test.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let test_json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let seed = test_json.get("seed").and_then(|s| s.as_u64()).context("test.json has no seed")?;
    let mut argv = vec!["faultline-test".to_string()];
    argv.extend(options_to_argv(test_json.get("options").context("test.json has no options")?)?);
    let mut args = <StoredOptions as clap::Parser>::try_parse_from(&argv)
        .with_context(|| format!("test.json's options no longer parse: {}", argv.join(" ")))?
        .args;
    args.seed = Some(seed);
    args.replay = None;
    let events = test_json.get("planned_schedule").and_then(nemesis::schedule_from_json);
    Ok(Replay { args, events })
}

/// What a finished run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    Unknown,
}

pub fn run(args: TestArgs) -> i32 {
    match run_test(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("faultline test: harness failure: {e:#}");
            EXIT_HARNESS_FAILURE
        }
    }
}

/// Blocks the termination signals in this thread (and so in every thread it starts) and turns
/// them into the INTERRUPTED flag, so that a Ctrl-C or SIGTERM ends the run through the normal
/// heal-and-clean-up path.
fn install_signal_thread() -> Result<()> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    signals.thread_block().context("blocking termination signals")?;
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || loop {
            if let Ok(signal) = signals.wait() {
                eprintln!("\nfaultline: {signal} received: stopping, healing and cleaning up");
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
        })
        .context("spawning the signal thread")?;
    Ok(())
}

fn make_run_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut hash = fnv1a(format!("{}-{nanos}", std::process::id()).as_bytes());
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::new();
    for _ in 0..6 {
        id.push(alphabet[(hash % 36) as usize] as char);
        hash /= 36;
    }
    id
}

fn build_db(args: &TestArgs) -> Result<Box<dyn Db>> {
    let op_timeout = Duration::from_millis(args.op_timeout_ms);
    if let Some(path) = &args.system {
        let options = args.system_options.as_deref().unwrap_or("");
        let db = crate::file_system::FileDb::open(path, options, op_timeout)?;
        let workload = args.workload.workload.name();
        if !db.file().supports(workload) {
            let supported: Vec<&str> = db.file().workloads.iter().map(|w| w.get_ref().as_str()).collect();
            bail!("system `{}` supports the workloads {}, not {workload}", db.file().name, supported.join(", "));
        }
        return Ok(Box::new(db));
    }
    match args.db.as_str() {
        "faultline-node" => {
            let binary = args.node_bin.clone().unwrap_or_else(|| db::sibling_binary("faultline-node"));
            let resolved = if binary.components().count() > 1 {
                binary.clone()
            } else {
                std::env::var_os("PATH")
                    .and_then(|paths| {
                        std::env::split_paths(&paths).map(|dir| dir.join(&binary)).find(|p| db::is_executable(p))
                    })
                    .unwrap_or(binary.clone())
            };
            if !db::is_executable(&resolved) {
                bail!(
                    "faultline-node binary not found at {}: build it with `cargo build -p faultline-node` \
                     or pass --node-bin",
                    resolved.display()
                );
            }
            let binary = resolved.canonicalize().unwrap_or(resolved);
            Ok(Box::new(FaultlineNodeDb { binary, bug: args.bug.clone(), op_timeout }))
        }
        "toy" => {
            let python = PathBuf::from("python3");
            if !crate::netns::program_exists("python3") {
                bail!("--db toy needs python3");
            }
            Ok(Box::new(ToyDb { python, bug: args.bug.clone(), op_timeout }))
        }
        "etcd" => Ok(Box::new(crate::etcd::EtcdDb::new(&args.etcd, op_timeout)?)),
        other => bail!("unknown --db `{other}`; known: faultline-node, etcd, toy"),
    }
}

struct Parsed {
    families: Vec<Family>,
    targets: Vec<TargetSpec>,
    shapes: Vec<Shape>,
}

fn parse_options(args: &TestArgs) -> Result<Parsed> {
    let families = if args.nemesis.trim() == "none" {
        Vec::new()
    } else if args.nemesis.trim() == "default" {
        // Filled in once the db is known (`nemesis::default_families`).
        Vec::new()
    } else {
        nemesis::parse_list(
            &args.nemesis,
            "nemesis",
            &[
                "partition",
                "kill",
                "pause",
                "loss",
                "isolated-pause",
                "crash",
                "figure-8",
                "restart-voter",
                "none",
                "default",
            ],
            Family::parse,
        )?
    };
    let targets = nemesis::parse_list(
        &args.nemesis_targets,
        "nemesis target",
        &["one", "minority", "majority", "all", "leader"],
        TargetSpec::parse,
    )?;
    let shape_names: Vec<&str> = Shape::ALL.iter().map(|s| s.name()).collect();
    let shapes = nemesis::parse_list(&args.partition_shapes, "partition shape", &shape_names, Shape::parse)?;
    if targets.is_empty() || shapes.is_empty() {
        bail!("--nemesis-targets and --partition-shapes need at least one entry");
    }
    if args.nodes == 0 || args.nodes > crate::cluster::MAX_NODES {
        bail!("--nodes must be 1..={}", crate::cluster::MAX_NODES);
    }
    if args.rate <= 0.0 || args.nemesis_interval <= 0.0 {
        bail!("--rate and --nemesis-interval must be positive");
    }
    args.workload.validate(&args.db)?;
    Ok(Parsed { families, targets, shapes })
}

/// The command line that re-runs this test with the same seed.
fn rerun_command(seed: u64) -> String {
    let mut argv: Vec<String> = std::env::args().collect();
    let mut i = 0;
    while i < argv.len() {
        if argv[i] == "--seed" {
            argv.drain(i..(i + 2).min(argv.len()));
        } else if argv[i].starts_with("--seed=") {
            argv.remove(i);
        } else {
            i += 1;
        }
    }
    argv.push("--seed".to_string());
    argv.push(seed.to_string());
    argv.join(" ")
}

fn run_test(args: TestArgs) -> Result<i32> {
    crate::netns::check_prerequisites()?;
    let replay_of = args.replay.clone();
    let (args, stored_events) = match &replay_of {
        Some(run_dir) => {
            let replay = load_replay(run_dir)?;
            eprintln!(
                "faultline test: replaying {} with its options, seed {} and fault schedule. Real processes \
                 are not deterministic (thread scheduling, timers, elections), so the replay may not \
                 reproduce the outcome.",
                run_dir.display(),
                replay.args.seed.unwrap_or_default()
            );
            (replay.args, replay.events)
        }
        None => (args, None),
    };
    let mut parsed = parse_options(&args)?;
    let db = build_db(&args)?;
    let rotating = args.nemesis.trim() == "default";
    if rotating {
        parsed.families = nemesis::default_families(db.has_raft_status());
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let concurrency = args.concurrency.unwrap_or(2 * args.nodes).max(1);
    let time_limit = Duration::from_secs(args.time_limit);
    let interval = Duration::from_secs_f64(args.nemesis_interval);
    let planned = if rotating {
        nemesis::plan_rotating(seed, &parsed.families, interval, time_limit)
    } else {
        nemesis::plan(seed, &parsed.families, interval, time_limit)
    };
    let events = match stored_events {
        Some(stored) => {
            if stored != planned {
                eprintln!(
                    "faultline test: the stored fault schedule differs from this version's plan; using the stored one"
                );
            }
            stored
        }
        None => planned,
    };

    install_signal_thread()?;
    let mut args = args;
    let name = args.name.get_or_insert_with(|| args.workload.workload.name().to_string()).clone();
    let run_dir = run_store::create_run_dir(&args.store, &name)?;
    let start = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let log = RunLog::create(&run_dir.join("faultline.log"), start, false)?;
    let run_id = make_run_id();
    let test_json = json!({
        "name": name,
        "run_id": run_id,
        "seed": seed,
        // The checker model for this workload; `faultline check <run-dir>` reads it.
        "model": args.workload.workload.model().name(),
        "options": args,
        "concurrency": concurrency,
        "argv": std::env::args().collect::<Vec<_>>(),
        "git_revision": run_store::git_revision(),
        "versions": {"faultline": env!("CARGO_PKG_VERSION"), "db": db.describe()},
        "started_at": run_store::utc_timestamp(SystemTime::now()),
        "planned_faults": nemesis::plan_summary(&events),
        "planned_schedule": nemesis::schedule_to_json(&events),
        "replay_of": replay_of.as_ref().map(|p| p.display().to_string()),
    });
    std::fs::write(run_dir.join("test.json"), serde_json::to_string_pretty(&test_json)?)?;
    eprintln!(
        "faultline test {name}: run {run_id}, seed {seed}, {} nodes, {concurrency} workers, {}s; store {}",
        args.nodes,
        args.time_limit,
        run_dir.display()
    );
    log.log(format!("run {run_id} seed {seed} dir {}", run_dir.display()));

    let history = HistoryLog::create(&run_dir.join("history.jsonl"), start)?;
    let setup_started = Instant::now();
    let cluster = Cluster::create(&run_id, args.nodes, &run_dir)?;
    let setup_ms = setup_started.elapsed().as_secs_f64() * 1000.0;
    log.log(format!(
        "cluster up in {setup_ms:.1} ms: subnet 10.77.{}.0/24, namespaces {:?}",
        cluster.subnet_octet,
        cluster.namespaces()
    ));

    let outcome = drive(&args, &parsed, &events, seed, concurrency, db.as_ref(), &cluster, &history, &log);
    let cluster_logs: Vec<(NodeId, PathBuf)> = cluster
        .node_ids()
        .into_iter()
        .flat_map(|node| db.log_paths(&cluster, node).into_iter().map(move |path| (node, path)))
        .collect();
    // Tear down whatever happened: the cluster must not outlive the run.
    let teardown = db.teardown(&cluster).and_then(|_| cluster.destroy());
    log.log(format!("teardown: {teardown:?}"));
    if interactive {
        eprint!("\r\x1b[K");
    }
    let Driven { unexpected_exits, convergence, online } = outcome?;
    teardown?;
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("faultline test: interrupted; the partial history is in {}", run_dir.display());
        // No results.json: the report says NO VERDICT.
        render_report(&run_dir, &log);
        return Ok(EXIT_HARNESS_FAILURE);
    }

    let records = history.records();
    let workload = args.workload.workload;
    let mut checked = crate::checking::check_workload(&records, &run_dir, workload);
    // The cluster's own checks (src/convergence.rs) count like the workload's direct checkers.
    let panics = crate::convergence::panics_in_logs(&cluster_logs);
    checked.add_check(crate::convergence::crash_report(&unexpected_exits, &panics));
    if let Some(report) = convergence {
        checked.add_check(report);
    }
    let (mut verdict, checker_report) = (checked.verdict, checked.checker);
    if online.invalid_at_s.is_some() && verdict != Verdict::Invalid {
        // A prefix that is not linearizable makes the whole history so (monotonicity), so the
        // end-of-run check can only have run out of budget; the finding stands.
        log.log(format!("online check found the history invalid; the end-of-run check said {verdict:?}"));
        verdict = Verdict::Invalid;
    }
    let counts = count_ops(&records);
    let faults_started = history.counters.faults_started.load(Ordering::Relaxed);
    let mut vacuous_reasons = Vec::new();
    if faults_started == 0 {
        vacuous_reasons.push("no fault fired".to_string());
    }
    if counts.ok < 20 || counts.ok * 20 < counts.invoked {
        vacuous_reasons.push(format!("only {} of {} ops succeeded", counts.ok, counts.invoked));
    }
    let vacuous = !vacuous_reasons.is_empty();
    let results = json!({
        "verdict": verdict,
        "vacuous": vacuous,
        "vacuous_reasons": vacuous_reasons,
        "ops": {"invoked": counts.invoked, "ok": counts.ok, "fail": counts.fail, "info": counts.info},
        "faults_started": faults_started,
        "unexpected_node_exits": unexpected_exits,
        "setup_ms": setup_ms,
        "duration_s": start.elapsed().as_secs_f64(),
        "checker": checker_report,
        "workload": workload.name(),
        "workload_checks": checked.workload_checks,
        "online": online,
    });
    std::fs::write(run_dir.join("results.json"), serde_json::to_string_pretty(&results)?)?;
    let shown = match (verdict, vacuous) {
        (Verdict::Valid, true) => "VACUOUS (valid, but nothing was really tested)".to_string(),
        (Verdict::Valid, false) => "VALID".to_string(),
        (Verdict::Invalid, _) => "INVALID".to_string(),
        (Verdict::Unknown, _) => "UNKNOWN".to_string(),
    };
    eprintln!("\n== faultline test {name}: {shown}");
    if let Some(at) = online.invalid_at_s {
        eprintln!(
            "   found {at:.1} s into the run by the online check{}",
            if online.stopped_early { "; the run stopped early (--stop-on-invalid)" } else { "" }
        );
    }
    eprintln!(
        "   ops: {} invoked, {} ok, {} fail, {} info; faults fired: {faults_started}",
        counts.invoked, counts.ok, counts.fail, counts.info
    );
    for check in &checked.workload_checks {
        eprintln!("   {} ({}): {}", check.checker, check.verdict.as_str(), check.summary);
    }
    if vacuous {
        eprintln!("   vacuous: {}", vacuous_reasons.join("; "));
    }
    if !unexpected_exits.is_empty() {
        eprintln!("   nodes that exited on their own (see their logs): {}", unexpected_exits.join(", "));
    }
    eprintln!("   results: {}", run_dir.join("results.json").display());
    if let Some(html) = checker_report.get("html").and_then(|h| h.as_str()) {
        eprintln!("   timeline of the anomaly: {html}");
    }
    if let Some(text) =
        checker_report.get("anomalies").and_then(|a| a.get(0)).and_then(|a| a.get("text")).and_then(|t| t.as_str())
    {
        let first_lines: Vec<&str> = text.lines().take(3).collect();
        eprintln!("   {}", first_lines.join("\n   "));
    }
    let node_logs: Vec<String> = cluster_logs
        .iter()
        .map(|(_, p)| match p.strip_prefix(&run_dir) {
            Ok(relative) => relative.display().to_string(),
            Err(_) => p.display().to_string(),
        })
        .collect();
    eprintln!("   logs (in the run directory): faultline.log {}", node_logs.join(" "));
    eprintln!("   re-run: {}", rerun_command(seed));
    // After results.json, so the report shows the verdict; a failure here changes neither.
    render_report(&run_dir, &log);
    Ok(match (verdict, vacuous) {
        (Verdict::Invalid, _) => EXIT_INVALID,
        (Verdict::Unknown, _) => EXIT_UNKNOWN,
        (Verdict::Valid, true) => EXIT_VACUOUS,
        (Verdict::Valid, false) => EXIT_VALID,
    })
}

/// Renders the run's report (index.html and the rest); a failure is logged, never a verdict.
fn render_report(run_dir: &std::path::Path, log: &RunLog) {
    match crate::report::render_run(run_dir) {
        Ok(rendered) => eprintln!("   report: {}", rendered.index.display()),
        Err(e) => log.log(format!("report: {e:#}")),
    }
}

/// Starts the nodes, runs load and nemesis, heals, recovers, reads every key.
#[allow(clippy::too_many_arguments)]
fn drive(
    args: &TestArgs,
    parsed: &Parsed,
    events: &[nemesis::PlannedEvent],
    seed: u64,
    concurrency: usize,
    db: &dyn Db,
    cluster: &Cluster,
    history: &HistoryLog,
    log: &RunLog,
) -> Result<Driven> {
    db.setup(cluster).context("setting up the db")?;
    for node in cluster.node_ids() {
        db.start(cluster, node)?;
    }
    log.log("nodes started");
    wait_for_leader(db, cluster, log)?;
    let nemesis = Nemesis::new(
        cluster,
        db,
        history,
        log,
        NemesisOptions { targets: parsed.targets.clone(), shapes: parsed.shapes.clone() },
        seed ^ 0x6e656d65,
    );
    let op_deadline = Duration::from_millis(args.op_timeout_ms) * 3 + Duration::from_secs(2);
    let nemesis_stop = AtomicBool::new(false);
    let progress_stop = AtomicBool::new(false);
    let online_done = AtomicBool::new(false);
    let stop_load = AtomicBool::new(false);
    let mut online = OnlineReport::default();
    let open_worker = crate::interpreter::cluster_workers(cluster, db, args.workload.workload);
    std::thread::scope(|scope| -> Result<()> {
        // However this closure ends (error or panic), the nemesis and progress threads must stop,
        // or the scope would wait for them before the cluster can be torn down.
        let _stop_helpers = SetOnDrop(&[&nemesis_stop, &progress_stop, &online_done]);
        let mut interpreter = Interpreter::start(scope, &open_worker, history, concurrency, op_deadline)?;
        let load_start = Instant::now();
        let nemesis_ref = &nemesis;
        let nemesis_stop_ref = &nemesis_stop;
        let nemesis_thread =
            std::thread::Builder::new().name("nemesis".to_string()).spawn_scoped(scope, move || -> Result<()> {
                cluster.enter_client_namespace()?;
                nemesis_ref.run(events, load_start, nemesis_stop_ref)
            })?;
        let progress_stop_ref = &progress_stop;
        scope.spawn(move || progress(history, nemesis_ref, load_start, progress_stop_ref));
        let (online_done_ref, stop_load_ref) = (&online_done, &stop_load);
        let model = args.workload.workload.model();
        let stop_on_invalid = args.stop_on_invalid;
        let online_thread =
            std::thread::Builder::new().name("online-check".to_string()).spawn_scoped(scope, move || {
                crate::online::watch(history, model, load_start, online_done_ref, stop_on_invalid, stop_load_ref)
            })?;

        let mut load = UntilSet::new(
            &stop_load,
            TimeLimit::new(
                args.time_limit * 1_000_000_000,
                Rate::new(args.rate, seed ^ 0x72617465, args.workload.generator(concurrency, seed)),
            ),
        );
        if std::env::var("FAULTLINE_FAILPOINT").as_deref() == Ok("panic-during-load") {
            // For the tests of cleanup after a harness panic.
            std::thread::sleep(Duration::from_secs(2));
            panic!("failpoint panic-during-load");
        }
        let load_result = interpreter.run(&mut load, &INTERRUPTED);
        log.log(format!("load phase over: {load_result:?}"));
        online_done.store(true, Ordering::SeqCst);
        online = online_thread.join().unwrap_or_default();
        if online.stopped_early {
            log.log(format!("load stopped early: the online check found the history invalid: {online:?}"));
        }
        nemesis_stop.store(true, Ordering::SeqCst);
        let nemesis_result =
            nemesis_thread.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the nemesis thread panicked")));
        log.log(format!("final heal: {nemesis_result:?}"));
        load_result?;
        nemesis_result?;

        if !INTERRUPTED.load(Ordering::SeqCst) {
            log.log(format!("recovery window {} s", args.recovery));
            let recovery_end = Instant::now() + Duration::from_secs(args.recovery);
            while Instant::now() < recovery_end && !INTERRUPTED.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Every key the load used is read twice, by different workers and so through different nodes.
            let mut final_reads = crate::workload_glue::final_reads(&load.into_inner().into_inner().into_inner());
            interpreter.run(&mut final_reads, &INTERRUPTED)?;
            log.log("final reads done");
        }
        progress_stop.store(true, Ordering::SeqCst);
        drop(interpreter);
        Ok(())
    })?;
    let mut unexpected_exits = nemesis.unexpected_exits();
    for (node, status) in cluster.take_unexpected_exits() {
        log.log(format!("n{node} exited on its own: {status}"));
        unexpected_exits.push(format!("n{node}: {status}"));
    }
    let convergence = if INTERRUPTED.load(Ordering::SeqCst) {
        None
    } else {
        // The digests are asked over the client network, so from a thread in the client namespace.
        let converged = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<Option<CheckerReport>> {
                    cluster.enter_client_namespace()?;
                    Ok(crate::convergence::check_convergence(db, cluster, CONVERGENCE_TIMEOUT))
                })
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the convergence thread panicked")))
        })?;
        if let Some(report) = &converged {
            log.log(format!("convergence: {} ({})", report.verdict.as_str(), report.summary));
        }
        converged
    };
    Ok(Driven { unexpected_exits, convergence, online })
}

/// How long the replicas get, after the final reads, to apply one and the same log prefix.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(15);

/// What `drive` learned about the cluster besides the history.
struct Driven {
    /// Node exits the nemesis did not cause, as "nN: exit status".
    unexpected_exits: Vec<String>,
    /// The convergence check, when the db can give digests and the run was not interrupted.
    convergence: Option<CheckerReport>,
    /// What checking the history while it grew found.
    online: OnlineReport,
}

/// Sets every flag when dropped.
struct SetOnDrop<'a>(&'a [&'a AtomicBool]);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        for flag in self.0 {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

/// Waits (bounded) until the db reports a leader, if it can; a db without leaders just gets a
/// moment to open its ports.
fn wait_for_leader(db: &dyn Db, cluster: &Cluster, log: &RunLog) -> Result<()> {
    if !db.has_leader() {
        std::thread::sleep(Duration::from_millis(200));
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                cluster.enter_client_namespace()?;
                loop {
                    if let Some(leader) = db.leader(cluster) {
                        log.log(format!("leader: n{leader}"));
                        return Ok(());
                    }
                    if Instant::now() >= deadline || INTERRUPTED.load(Ordering::SeqCst) {
                        log.log("no leader reported at start; going on");
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("leader wait panicked")))
    })?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// A live progress line on a terminal; a plain line every 10 s otherwise.
fn progress(history: &HistoryLog, nemesis: &Nemesis, start: Instant, stop: &AtomicBool) {
    let interactive = std::io::stderr().is_terminal();
    let period = if interactive { Duration::from_secs(1) } else { Duration::from_secs(10) };
    let mut next = Instant::now() + period;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        next += period;
        let counters = &history.counters;
        let line = format!(
            "{:5.0}s  ok {}  fail {}  info {}  faults {}",
            start.elapsed().as_secs_f64(),
            counters.ok.load(Ordering::Relaxed),
            counters.fail.load(Ordering::Relaxed),
            counters.info.load(Ordering::Relaxed),
            nemesis.describe_active()
        );
        if interactive {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

#[derive(Debug, Default)]
struct OpCounts {
    invoked: u64,
    ok: u64,
    fail: u64,
    info: u64,
}

fn count_ops(records: &[Record]) -> OpCounts {
    let mut counts = OpCounts::default();
    for op in records.iter().filter_map(Record::as_op) {
        match op.op_type {
            OpType::Invoke => counts.invoked += 1,
            OpType::Ok => counts.ok += 1,
            OpType::Fail => counts.fail += 1,
            OpType::Info => counts.info += 1,
        }
    }
    counts
}
