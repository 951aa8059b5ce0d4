//! `faultline test`: build a cluster in network namespaces, run client workers and a nemesis
//! against it, store the history as it goes, heal, recover, read every key, check, clean up.
//!
//! Outcomes (`crate::exit::Exit`): valid, invalid, unknown, vacuous (nothing was really tested),
//! harness failure or interrupted. A harness failure is never reported as a finding about the system.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use faultline_checker::run::{write_artifact, RunManifest, RunResults, Versions, RUN_FORMAT_VERSION};
use faultline_checker::Verdict;
use faultline_workloads::CheckerReport;
use serde::Serialize;

use crate::cluster::{Cluster, NodeId};
use crate::exit::Exit;
use crate::generator::{Rate, TimeLimit, UntilSet};
use crate::interpreter::Interpreter;
use crate::nemesis::grudge::Shape;
use crate::nemesis::{self, Family, Nemesis, NemesisOptions, TargetSpec};
use crate::online::OnlineReport;
use crate::run_store::{self, HistoryLog, RunLog};
use crate::systems::Db;

#[derive(clap::Args, Debug, Clone, Serialize, serde::Deserialize)]
// A later option overrides an earlier one, so scripts can pass defaults and callers extras.
#[command(args_override_self = true)]
// Options a stored run does not name (an older faultline's test.json) take today's defaults.
#[serde(default)]
pub struct TestArgs {
    /// Name of the test; the run is stored under <store>/<name>/<timestamp>/. Default: the
    /// workload's name.
    #[arg(long)]
    pub name: Option<String>,
    /// The system under test and how to find it (`--db`, `--node-bin`, `--bug`, `--etcd-*`;
    /// src/systems/).
    #[command(flatten)]
    #[serde(flatten)]
    pub system: crate::systems::SystemArgs,
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
    /// for 5-node clusters), lose-unfsynced (kill the targets and take away what their disks did
    /// not fsync, restart them at the window's end; faultfs under every node), torn-write (the
    /// same, keeping a prefix of the last un-fsynced write), clock-offset (the targets' wall
    /// clocks ahead or behind by up to 30 s; libfaketime), clock-strobe (their wall clocks jumping
    /// between true time and an offset of 1-5 s every 0.5-3 s), member (remove a node from the
    /// configuration and add it back, or transfer leadership; the final heal restores the full
    /// membership); "none"; or "default": partition (every shape of
    /// --partition-shapes), isolated-pause, kill, crash, pause and, when the system reports its
    /// Raft state, figure-8 and restart-voter, one window at a time in a seeded rotation. A list
    /// runs each family on its own timeline, overlapping.
    #[arg(long, default_value = "default")]
    pub nemesis: String,
    /// Mean seconds between fault edges (for "default": the mean length of a fault window).
    #[arg(long, default_value_t = 3.0)]
    pub nemesis_interval: f64,
    /// Targets for kill, pause, loss, crash and the disk faults: one, minority, majority, all, leader.
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
    /// Re-run a stored run with its options, seed and fault schedule (from <run-dir>/test.json);
    /// every other option given here is ignored. Real processes are not deterministic, so the
    /// replay may not reproduce the outcome.
    #[arg(long, value_name = "RUN_DIR")]
    #[serde(skip)]
    pub replay: Option<PathBuf>,
}

impl Default for TestArgs {
    fn default() -> Self {
        crate::clap_defaults()
    }
}

/// What a replay takes from a stored run: its options (with its seed) and its fault schedule.
struct Replay {
    args: TestArgs,
    events: Option<Vec<nemesis::PlannedEvent>>,
}

fn load_replay(run_dir: &std::path::Path) -> Result<Replay> {
    let manifest = RunManifest::read(run_dir)?;
    let mut args: TestArgs = serde_json::from_value(serde_json::Value::Object(manifest.options.clone()))
        .with_context(|| format!("{}: the stored options do not read as this version's", run_dir.display()))?;
    args.seed = Some(manifest.seed);
    args.replay = None;
    let events = nemesis::schedule_from_json(&manifest.planned_schedule);
    Ok(Replay { args, events })
}

pub fn run(args: TestArgs) -> Exit {
    match run_test(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("faultline test: harness failure: {e:#}");
            Exit::HarnessFailure
        }
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
                "lose-unfsynced",
                "torn-write",
                "clock-offset",
                "clock-strobe",
                "member",
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
    args.workload.validate()?;
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

/// A run as phases with typed hand-offs: plan (options, replay, seed, fault schedule; nothing is
/// created) -> execute (cluster, load, faults, teardown) -> judge (the one check path) -> store ->
/// summarise.
fn run_test(args: TestArgs) -> Result<Exit> {
    crate::netns::check_prerequisites()?;
    let mut plan = plan(args)?;
    crate::lifecycle::install_signal_thread("faultline")?;
    let name = plan.args.name.get_or_insert_with(|| plan.args.workload.kind().name().to_string()).clone();
    let run_dir = run_store::create_run_dir(&plan.args.store, &name)?;
    let start = Instant::now();
    let log = RunLog::create(&run_dir.join("faultline.log"), start, false)?;
    let run_id = crate::lifecycle::make_run_id("test");
    write_artifact(&run_dir.join("test.json"), &manifest(&plan, &name, &run_id)?).context("writing test.json")?;
    eprintln!(
        "faultline test {name}: run {run_id}, seed {}, {} nodes, {} workers, {}s; store {}",
        plan.seed,
        plan.args.nodes,
        plan.concurrency,
        plan.args.time_limit,
        run_dir.display()
    );
    log.log(format!("run {run_id} seed {} dir {}", plan.seed, run_dir.display()));
    let history = HistoryLog::create(&run_dir.join("history.jsonl"), start)?;

    let executed = execute(&plan, &run_id, &run_dir, &history, &log)?;
    if crate::lifecycle::INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("faultline test: interrupted; the partial history is in {}", run_dir.display());
        // No results.json: the report says NO VERDICT.
        render_report(&run_dir, &log);
        return Ok(Exit::HarnessFailure);
    }
    let faults_started = history.counters.faults_started.load(Ordering::Relaxed);
    let mut results = judge_run(&plan, &history.records(), &executed, faults_started);
    if results.checker.verdict() != Verdict::Invalid && executed.driven.online.invalid_at_s.is_some() {
        log.log(format!(
            "online check found the history invalid; the end-of-run check said {:?}",
            results.checker.verdict()
        ));
    }
    results.duration_s = Some(start.elapsed().as_secs_f64());
    if let Err(e) =
        crate::judge::write_check_html(&mut results, &run_dir, &run_dir.join("history.jsonl").display().to_string())
    {
        log.log(format!("check.html: {e:#}"));
    }
    write_artifact(&run_dir.join("results.json"), &results).context("writing results.json")?;
    summarise(&name, &results, &executed, &run_dir, plan.seed);
    // After results.json, so the report shows the verdict; a failure here changes neither.
    render_report(&run_dir, &log);
    Ok(match (results.verdict, results.vacuous) {
        (Verdict::Valid, true) => Exit::Vacuous,
        (verdict, _) => Exit::of_verdict(verdict),
    })
}

/// What is decided before anything is created.
struct Plan {
    args: TestArgs,
    parsed: Parsed,
    db: Box<dyn Db>,
    seed: u64,
    concurrency: usize,
    events: Vec<nemesis::PlannedEvent>,
    wants_disk: bool,
    wants_clock: bool,
    replay_of: Option<PathBuf>,
}

/// Reads a stored run when replaying, parses and checks the options, builds the system and refuses
/// faults it cannot take, and plans the fault schedule. Creates nothing.
fn plan(args: TestArgs) -> Result<Plan> {
    let replay_of = args.replay.clone();
    let (mut args, stored_events) = match &replay_of {
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
    let db = crate::systems::build(&args.system, Duration::from_millis(args.op_timeout_ms))?;
    args.workload.resolve(|workload| db.supports(workload))?;
    if !db.supports(args.workload.kind()) {
        bail!("--db {} does not run the {} workload", args.system.db, args.workload.kind().name());
    }
    let rotating = args.nemesis.trim() == "default";
    if rotating {
        parsed.families = nemesis::default_families(db.raft().is_some());
    }
    let wants_disk = nemesis::disk::needs_disk(&parsed.families);
    if wants_disk {
        crate::disk::DiskLayer::check_possible(db.as_ref())?;
    }
    if parsed.families.contains(&Family::Member) && db.membership().is_none() {
        bail!("--nemesis member needs membership commands, and {} has none in faultline", db.name());
    }
    let wants_clock = nemesis::clock::needs_clock(&parsed.families);
    if wants_clock {
        crate::clock::ClockLayer::check_possible(db.node_binary().as_deref(), &db.name())?;
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
    Ok(Plan { args, parsed, db, seed, concurrency, events, wants_disk, wants_clock, replay_of })
}

/// test.json for a planned run.
fn manifest(plan: &Plan, name: &str, run_id: &str) -> Result<RunManifest> {
    let serde_json::Value::Object(options) = serde_json::to_value(&plan.args)? else {
        bail!("the test options did not serialise to an object");
    };
    Ok(RunManifest {
        format_version: RUN_FORMAT_VERSION,
        name: name.to_string(),
        run_id: run_id.to_string(),
        seed: plan.seed,
        // The checker model for this workload; `faultline check <run-dir>` reads it.
        model: plan.args.workload.kind().model().name().to_string(),
        options,
        concurrency: plan.concurrency,
        argv: std::env::args().collect(),
        git_revision: run_store::git_revision(),
        versions: Versions { faultline: env!("CARGO_PKG_VERSION").to_string(), db: plan.db.describe() },
        started_at: Some(run_store::utc_timestamp(SystemTime::now())),
        planned_faults: serde_json::to_value(nemesis::plan_summary(&plan.events))?,
        planned_schedule: nemesis::schedule_to_json(&plan.events),
        replay_of: plan.replay_of.as_ref().map(|p| p.display().to_string()),
    })
}

/// What executing a run left besides its history.
struct Executed {
    driven: Driven,
    /// Every node's log files, for the crash check and the summary.
    cluster_logs: Vec<(NodeId, PathBuf)>,
    setup_ms: f64,
}

/// Builds the cluster (with the disk and clock layers the faults need), drives the run, and tears
/// everything down whatever happened.
fn execute(
    plan: &Plan,
    run_id: &str,
    run_dir: &std::path::Path,
    history: &HistoryLog,
    log: &RunLog,
) -> Result<Executed> {
    let db = plan.db.as_ref();
    let setup_started = Instant::now();
    let cluster = Cluster::create(run_id, plan.args.nodes, run_dir)?;
    let setup_ms = setup_started.elapsed().as_secs_f64() * 1000.0;
    log.log(format!(
        "cluster up in {setup_ms:.1} ms: subnet 10.77.{}.0/24, namespaces {:?}",
        cluster.subnet_octet,
        cluster.namespaces()
    ));
    let disk = if plan.wants_disk {
        // On failure the mounts made so far are taken down, and the cluster by its Drop.
        let layer = crate::disk::DiskLayer::mount_all(&cluster, db)?;
        log.log("faultfs mounted over every node's data directory");
        Some(layer)
    } else {
        None
    };
    let clock = if plan.wants_clock { Some(crate::clock::ClockLayer::install(&cluster)?) } else { None };
    let outcome = drive(
        &plan.args,
        &plan.parsed,
        &plan.events,
        plan.seed,
        plan.concurrency,
        db,
        &cluster,
        (disk.as_ref(), clock.as_ref()),
        history,
        log,
    );
    let cluster_logs: Vec<(NodeId, PathBuf)> = cluster
        .node_ids()
        .into_iter()
        .flat_map(|node| db.log_paths(&cluster, node).into_iter().map(move |path| (node, path)))
        .collect();
    // Tear down whatever happened: the cluster must not outlive the run.
    let teardown = db
        .teardown(&cluster)
        .and_then(|_| disk.as_ref().map_or(Ok(()), |layer| layer.unmount_all(&cluster)))
        .and_then(|_| cluster.destroy());
    log.log(format!("teardown: {teardown:?}"));
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
    let driven = outcome?;
    teardown?;
    Ok(Executed { driven, cluster_logs, setup_ms })
}

/// The run's results through the one check path (`src/judge.rs`): the history, the workload's and
/// the cluster's checks, the online finding and vacuity.
fn judge_run(
    plan: &Plan,
    records: &[faultline_checker::history::Record],
    executed: &Executed,
    faults_started: u64,
) -> RunResults {
    let workload = plan.args.workload.kind();
    let Driven { unexpected_exits, convergence, online } = &executed.driven;
    // The cluster's own checks (src/convergence.rs) count like the workload's direct checkers.
    let panics = crate::convergence::panics_in_logs(&executed.cluster_logs);
    let mut cluster_checks = vec![crate::convergence::crash_report(unexpected_exits, &panics)];
    cluster_checks.extend(convergence.clone());
    let options = crate::judge::run_check_options(workload, Some(crate::judge::CHECK_TIMEOUT), "history.jsonl");
    let evidence = crate::judge::Evidence {
        workload: Some(workload),
        cluster_checks,
        online: Some(online.clone()),
        faults_started: Some(faults_started),
    };
    let mut results = crate::judge::judge_records(records, &options, evidence);
    results.unexpected_node_exits = unexpected_exits.clone();
    results.setup_ms = Some(executed.setup_ms);
    results
}

/// What a person reads at the end of a run.
fn summarise(name: &str, results: &RunResults, executed: &Executed, run_dir: &std::path::Path, seed: u64) {
    let online = &executed.driven.online;
    let counts = results.ops.unwrap_or_default();
    let shown = match (results.verdict, results.vacuous) {
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
        "   ops: {} invoked, {} ok, {} fail, {} info; faults fired: {}",
        counts.invoked,
        counts.ok,
        counts.fail,
        counts.info,
        results.faults_started.unwrap_or(0)
    );
    for check in &results.workload_checks {
        eprintln!("   {} ({}): {}", check.checker, check.verdict.as_str(), check.summary);
    }
    if results.vacuous {
        eprintln!("   vacuous: {}", results.vacuous_reasons.join("; "));
    }
    if !results.unexpected_node_exits.is_empty() {
        eprintln!("   nodes that exited on their own (see their logs): {}", results.unexpected_node_exits.join(", "));
    }
    eprintln!("   results: {}", run_dir.join("results.json").display());
    if let Some(html) = results.checker.html() {
        eprintln!("   timeline of the anomaly: {}", html.display());
    }
    if let Some(text) = results.checker.result().and_then(|r| r.anomalies.first()).map(|a| a.text.as_str()) {
        let first_lines: Vec<&str> = text.lines().take(3).collect();
        eprintln!("   {}", first_lines.join("\n   "));
    }
    let node_logs: Vec<String> = executed
        .cluster_logs
        .iter()
        .map(|(_, p)| match p.strip_prefix(run_dir) {
            Ok(relative) => relative.display().to_string(),
            Err(_) => p.display().to_string(),
        })
        .collect();
    eprintln!("   logs (in the run directory): faultline.log {}", node_logs.join(" "));
    eprintln!("   re-run: {}", rerun_command(seed));
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
    (disk, clock): (Option<&crate::disk::DiskLayer>, Option<&crate::clock::ClockLayer>),
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
    )
    .with_disk(disk)
    .with_clock(clock);
    let op_deadline = Duration::from_millis(args.op_timeout_ms) * 3 + Duration::from_secs(2);
    let nemesis_stop = AtomicBool::new(false);
    let progress_stop = AtomicBool::new(false);
    let online_done = AtomicBool::new(false);
    let stop_load = AtomicBool::new(false);
    let mut online = OnlineReport::default();
    let open_worker = crate::interpreter::cluster_workers(cluster, db, args.workload.kind());
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
        let workload = args.workload.kind();
        let stop_on_invalid = args.stop_on_invalid;
        let online_thread =
            std::thread::Builder::new().name("online-check".to_string()).spawn_scoped(scope, move || {
                crate::online::watch(history, workload, load_start, online_done_ref, stop_on_invalid, stop_load_ref)
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
        let load_result = interpreter.run(&mut load, &crate::lifecycle::INTERRUPTED);
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

        if !crate::lifecycle::INTERRUPTED.load(Ordering::SeqCst) {
            log.log(format!("recovery window {} s", args.recovery));
            let recovery_end = Instant::now() + Duration::from_secs(args.recovery);
            while Instant::now() < recovery_end && !crate::lifecycle::INTERRUPTED.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Every key the load used is read twice, by different workers and so through different nodes.
            let mut final_reads = crate::workload_glue::final_reads(&load.into_inner().into_inner().into_inner());
            interpreter.run(&mut final_reads, &crate::lifecycle::INTERRUPTED)?;
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
    let convergence = if crate::lifecycle::INTERRUPTED.load(Ordering::SeqCst) {
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
                    if Instant::now() >= deadline || crate::lifecycle::INTERRUPTED.load(Ordering::SeqCst) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_reads_the_stored_options_of_an_older_run_as_data() {
        let run_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("checker/tests/data/run-v0");
        let replay = load_replay(&run_dir).unwrap();
        assert_eq!(replay.args.seed, Some(1));
        assert_eq!(replay.args.system.bug.as_deref(), Some("no-fsync"));
        assert_eq!(replay.args.workload.workload, Some(faultline_workloads::WorkloadKind::CasRegister));
        assert_eq!(replay.args.time_limit, 20);
        assert!(replay.events.is_some(), "the stored fault schedule is read back");
    }

    #[test]
    fn options_a_stored_run_does_not_name_take_todays_defaults() {
        let args: TestArgs = serde_json::from_value(serde_json::json!({"nodes": 3})).unwrap();
        assert_eq!(args.nodes, 3);
        assert_eq!(args.time_limit, TestArgs::default().time_limit);
        assert_eq!(args.system.db, "faultline-node");
    }
}
