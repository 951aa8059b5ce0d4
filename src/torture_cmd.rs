//! `faultline torture`: a matrix of `faultline test` runs (workloads x nemesis mixes x seeds, plus
//! every saved scenario) within a total time budget, with a summary for people (index.html) and for
//! CI (torture.json, junit.xml). Also `--save-scenario NAME --from <run-dir>`.
//!
//! Each cell is a child `faultline test` process (this same binary), so a harness failure or a
//! crash in one cell is that cell's error and never takes the matrix down; the child cleans up its
//! own cluster, and on timeout it gets SIGTERM, which it handles by healing and cleaning up.
//!
//! Exit codes: 1 if any run was invalid; else 2 if any was unknown; else 4 if any was a harness
//! failure or no cell ran; else 0 (vacuous runs are reported as skipped, not failed).
//!
//! `--shard K/N` runs only the cells `torture::shard` assigns to shard K, and `merge` joins the
//! shards' summaries (`torture::merge`); the summary's type and views are in `torture::summary`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::exit::Exit;
use crate::run_store;
use crate::torture::merge::{self, MergeArgs};
use crate::torture::shard::{self, Shard};
use crate::torture::summary::{self, Build, CellResult, Outcome, PlannedCell, TortureSummary, FORMAT_VERSION};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TortureArgs {
    #[command(subcommand)]
    pub command: Option<TortureCommand>,
    /// A TOML file describing the matrix (keys: workloads, nemeses, seeds, time_limit, budget,
    /// test_args); its values replace the corresponding flags.
    #[arg(long)]
    pub matrix: Option<PathBuf>,
    /// Workloads, comma-separated (see `faultline workloads`).
    #[arg(long, default_value = "register")]
    pub workloads: String,
    /// Nemesis mixes, each a `--nemesis` value; separate mixes with `;` (e.g. "partition,kill;pause").
    #[arg(long, default_value = "partition,kill,pause")]
    pub nemeses: String,
    /// Seeds, comma-separated.
    #[arg(long, default_value = "1,2,3")]
    pub seeds: String,
    /// Seconds of load per run (`faultline test --time-limit`).
    #[arg(long, default_value_t = 30)]
    pub time_limit: u64,
    /// Total seconds for the whole matrix: no run starts that could not end within it.
    #[arg(long, default_value_t = 1800)]
    pub budget: u64,
    /// Stop at the first invalid run.
    #[arg(long)]
    pub fail_fast: bool,
    /// Let every run go to its time limit. By default each run gets `--stop-on-invalid`: it ends
    /// as soon as its history is certainly not linearizable, so a night is not spent waiting for
    /// verdicts that were certain minutes earlier.
    #[arg(long)]
    pub run_to_the_end: bool,
    /// Run only shard K of N of the matrix (cell i of the expanded matrix, scenarios included, is
    /// shard K's when i mod N = K - 1); `faultline torture merge` joins the shards' summaries.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Print the matrix's identity and the cells this invocation would run (with --shard, its
    /// share), then exit without running anything.
    #[arg(long)]
    pub plan: bool,
    /// Directory holding the runs; the summary goes to <store>/torture/<timestamp>/.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Directory of saved scenarios (<name>.toml); each is run once per matrix.
    #[arg(long, default_value = "scenarios")]
    pub scenarios: PathBuf,
    /// Save the run given with --from as scenarios/<NAME>.toml (its options and seed), then exit.
    #[arg(long, value_name = "NAME", requires = "from")]
    pub save_scenario: Option<String>,
    /// The run directory to save as a scenario.
    #[arg(long, value_name = "RUN_DIR")]
    pub from: Option<PathBuf>,
    /// Arguments for every matrix run's `faultline test` (e.g. `-- --db toy --nodes 3`).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum TortureCommand {
    /// Merge the summaries of `--shard K/N` runs of one matrix into one torture.json, junit.xml and
    /// index.html; refuses shards that are missing, given twice, or of another matrix or build.
    Merge(MergeArgs),
}

/// The matrix file's keys; every one is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    workloads: Option<Vec<String>>,
    nemeses: Option<Vec<String>>,
    seeds: Option<Vec<u64>>,
    time_limit: Option<u64>,
    budget: Option<u64>,
    test_args: Option<Vec<String>>,
}

/// One run to do: its name and the arguments after `faultline test`.
#[derive(Debug, Clone)]
struct Cell {
    name: String,
    workload: String,
    time_limit: u64,
    args: Vec<String>,
}

pub fn run(args: TortureArgs) -> Exit {
    let result = match (&args.command, &args.save_scenario, &args.from) {
        (Some(TortureCommand::Merge(merge_args)), _, _) => merge::run(merge_args),
        (None, Some(name), Some(from)) => save_scenario(&args.scenarios, name, from).map(|_| Exit::Valid),
        _ => run_matrix(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("faultline torture: {e:#}");
            Exit::HarnessFailure
        }
    }
}

fn split_list(text: &str, separator: char) -> Vec<String> {
    text.split(separator).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// A name usable as a directory: letters, digits and dashes.
fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

fn matrix_cells(args: &TortureArgs) -> Result<Vec<Cell>> {
    let file = match &args.matrix {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<MatrixFile>(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => MatrixFile::default(),
    };
    let workloads = file.workloads.unwrap_or_else(|| split_list(&args.workloads, ','));
    let nemeses = file.nemeses.unwrap_or_else(|| split_list(&args.nemeses, ';'));
    let seeds = match file.seeds {
        Some(seeds) => seeds,
        None => split_list(&args.seeds, ',')
            .iter()
            .map(|s| s.parse::<u64>().with_context(|| format!("--seeds: `{s}` is not a number")))
            .collect::<Result<_>>()?,
    };
    let time_limit = file.time_limit.unwrap_or(args.time_limit);
    let test_args = file.test_args.unwrap_or_else(|| args.test_args.clone());
    if workloads.is_empty() || nemeses.is_empty() || seeds.is_empty() {
        bail!("the matrix needs at least one workload, one nemesis mix and one seed");
    }
    // Seeds outermost: a budget that runs out still covers every workload and mix once.
    let mut cells = Vec::new();
    for seed in &seeds {
        for workload in &workloads {
            for nemesis in &nemeses {
                let name = format!("torture-{}-{}-s{seed}", slug(workload), slug(nemesis));
                let mut cell_args: Vec<String> = vec!["--name".into(), name.clone()];
                cell_args.extend(test_args.iter().cloned());
                cell_args.extend(
                    [
                        "--workload",
                        workload,
                        "--nemesis",
                        nemesis,
                        "--seed",
                        &seed.to_string(),
                        "--time-limit",
                        &time_limit.to_string(),
                    ]
                    .map(String::from),
                );
                cells.push(Cell { name, workload: workload.clone(), time_limit, args: cell_args });
            }
        }
    }
    Ok(cells)
}

/// Options that describe where and under which name a run is stored, not what it tests.
const NOT_SCENARIO_OPTIONS: [&str; 4] = ["name", "store", "seed", "replay"];

fn save_scenario(scenarios: &Path, name: &str, from: &Path) -> Result<()> {
    if name.is_empty() || slug(name) != name {
        bail!("a scenario name is letters, digits and dashes: `{name}`");
    }
    let manifest = faultline_checker::run::RunManifest::read(from)?;
    let seed = manifest.seed;
    let options = &manifest.options;
    // TOML has no null, and its integers are i64: unset options are left out, the seed is a string.
    let mut table = toml::Table::new();
    for (key, value) in options {
        if value.is_null() || NOT_SCENARIO_OPTIONS.contains(&key.as_str()) {
            continue;
        }
        let value = toml::Value::try_from(value).with_context(|| format!("option {key} in TOML"))?;
        table.insert(key.clone(), value);
    }
    let verdict = faultline_checker::run::RunResults::read(from)
        .map(|r| r.verdict.as_str().to_string())
        .unwrap_or_else(|_| "no verdict".to_string());
    let mut document = toml::Table::new();
    document.insert("seed".into(), toml::Value::String(seed.to_string()));
    document.insert("from".into(), toml::Value::String(from.display().to_string()));
    document.insert("verdict".into(), toml::Value::String(verdict.clone()));
    document.insert("options".into(), toml::Value::Table(table));
    std::fs::create_dir_all(scenarios).with_context(|| format!("creating {}", scenarios.display()))?;
    let out = scenarios.join(format!("{name}.toml"));
    let header = format!(
        "# Scenario `{name}`: the options and seed of {} (verdict: {verdict}).\n\
         # `faultline torture` runs it in every matrix; `faultline test --replay` re-runs a stored run.\n",
        from.display()
    );
    std::fs::write(&out, header + &toml::to_string(&document)?)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("faultline torture: saved {}", out.display());
    Ok(())
}

/// The command-line arguments that give back `options` (a scenario's stored options).
fn options_to_argv(options: &Value) -> Result<Vec<String>> {
    let object = options.as_object().context("`options` is not a table")?;
    let mut argv = Vec::new();
    for (key, value) in object {
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            Value::Null | Value::Bool(false) => {}
            Value::Bool(true) => argv.push(flag),
            Value::String(text) => argv.extend([flag, text.clone()]),
            Value::Number(number) => argv.extend([flag, number.to_string()]),
            other => bail!("option {key} has an unexpected value {other}"),
        }
    }
    Ok(argv)
}

/// Every scenarios/*.toml as a cell, in name order.
fn scenario_cells(scenarios: &Path) -> Result<Vec<Cell>> {
    let Ok(entries) = std::fs::read_dir(scenarios) else { return Ok(Vec::new()) };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut cells = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let document: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let seed = match document.get("seed") {
            Some(toml::Value::String(s)) => s.parse::<u64>().ok(),
            Some(toml::Value::Integer(i)) => u64::try_from(*i).ok(),
            _ => None,
        }
        .with_context(|| format!("{}: no seed", path.display()))?;
        let options = document.get("options").cloned().unwrap_or(toml::Value::Table(toml::Table::new()));
        let options = serde_json::to_value(options)?;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
        let name = format!("scenario-{}", slug(&stem));
        let workload = options.get("workload").and_then(Value::as_str).unwrap_or("register").to_string();
        let time_limit = options.get("time_limit").and_then(Value::as_u64).unwrap_or(60);
        let mut args = vec!["--name".to_string(), name.clone()];
        // The options must read as `faultline test`'s own before they become a child's argv.
        serde_json::from_value::<crate::test_cmd::TestArgs>(options.clone())
            .with_context(|| format!("{}: options `faultline test` does not know", path.display()))?;
        args.extend(options_to_argv(&options).with_context(|| format!("{}", path.display()))?);
        args.extend(["--seed".to_string(), seed.to_string()]);
        cells.push(Cell { name, workload, time_limit, args });
    }
    Ok(cells)
}

/// The run directory `store/latest` names, relative to the store.
fn latest_run(store: &Path) -> Option<String> {
    std::fs::read_link(store.join("latest")).ok().map(|p| p.display().to_string())
}

/// Seconds a run needs beyond its load: set-up, recovery, final reads, checking, teardown.
const RUN_OVERHEAD_S: u64 = 30;
/// A run still going this long after its expected end is stopped (SIGTERM, then SIGKILL).
const RUN_GRACE_S: u64 = 300;

fn run_cell(cell: &Cell, store: &Path) -> Result<(Option<i32>, Option<String>)> {
    let exe = std::env::current_exe().context("finding this faultline binary")?;
    let before = latest_run(store);
    let mut child = Command::new(&exe)
        .arg("test")
        .args(&cell.args)
        // After the cell's arguments, so every run lands in this matrix's store.
        .arg("--store")
        .arg(store)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} test", exe.display()))?;
    let deadline = Instant::now() + Duration::from_secs(cell.time_limit + RUN_OVERHEAD_S + RUN_GRACE_S);
    let mut terminated_at: Option<Instant> = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        match terminated_at {
            None if now >= deadline => {
                eprintln!("faultline torture: {} overran its time; stopping it", cell.name);
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                terminated_at = Some(now);
            }
            Some(at) if now >= at + Duration::from_secs(60) => {
                let _ = child.kill();
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let after = latest_run(store);
    let run = if after != before { after } else { None };
    Ok((status.code(), run))
}

/// The plan: the whole matrix's identity and the cells this invocation runs (its shard's share),
/// each with its index in the whole matrix.
fn plan(args: &TortureArgs) -> Result<(shard::MatrixIdentity, Vec<(usize, Cell)>)> {
    let mut cells = matrix_cells(args)?;
    cells.extend(scenario_cells(&args.scenarios)?);
    if !args.run_to_the_end {
        for cell in &mut cells {
            if !cell.args.iter().any(|a| a == "--stop-on-invalid") {
                cell.args.push("--stop-on-invalid".to_string());
            }
        }
    }
    let matrix = shard::matrix_identity(cells.iter().map(|c| (c.name.as_str(), c.args.as_slice())));
    let whole = Shard { index: 1, count: 1 };
    let share = args.shard.unwrap_or(whole);
    let planned = cells.into_iter().enumerate().filter(|(i, _)| share.owns(*i)).collect();
    Ok((matrix, planned))
}

fn run_matrix(args: &TortureArgs) -> Result<Exit> {
    let (matrix, cells) = plan(args)?;
    let shard_text = args.shard.map(|k| format!("shard {k} of ")).unwrap_or_default();
    if args.plan {
        println!("{shard_text}matrix {} ({} cells): {} cells", matrix.hash, matrix.cells, cells.len());
        for (i, cell) in &cells {
            println!("{i}\t{}", cell.name);
        }
        return Ok(Exit::Valid);
    }
    let budget = match &args.matrix {
        Some(path) => {
            let text = std::fs::read_to_string(path)?;
            toml::from_str::<MatrixFile>(&text)?.budget.unwrap_or(args.budget)
        }
        None => args.budget,
    };
    std::fs::create_dir_all(&args.store).with_context(|| format!("creating {}", args.store.display()))?;
    let store = args.store.canonicalize()?;
    let stamp = run_store::utc_timestamp(SystemTime::now());
    let torture_dir = store.join("torture").join(&stamp);
    std::fs::create_dir_all(&torture_dir).with_context(|| format!("creating {}", torture_dir.display()))?;
    eprintln!(
        "faultline torture: {} runs planned ({shard_text}matrix {}, {} cells), budget {budget} s; summary in {}",
        cells.len(),
        matrix.hash,
        matrix.cells,
        torture_dir.display()
    );
    let mut summary = TortureSummary {
        format_version: FORMAT_VERSION,
        build: Build::current(),
        matrix,
        shard: args.shard,
        merged_from: Vec::new(),
        planned: cells.iter().map(|(i, c)| PlannedCell { matrix_index: *i, name: c.name.clone() }).collect(),
        runs: Vec::new(),
        not_run: Vec::new(),
        duration_s: 0.0,
        first_invalid_s: None,
    };
    let start = Instant::now();
    let mut stopped_early = false;
    for (n, (matrix_index, cell)) in cells.iter().enumerate() {
        let elapsed = start.elapsed().as_secs();
        if stopped_early || elapsed + cell.time_limit + RUN_OVERHEAD_S > budget {
            summary.not_run.push(cell.name.clone());
            continue;
        }
        eprintln!(
            "\n== faultline torture: run {}/{}: {} ({} s into the matrix)",
            n + 1,
            cells.len(),
            cell.name,
            elapsed
        );
        let cell_start = Instant::now();
        let (exit_code, run) = match run_cell(cell, &store) {
            Ok(done) => done,
            Err(e) => {
                eprintln!("faultline torture: {}: {e:#}", cell.name);
                (None, None)
            }
        };
        let outcome = Outcome::from_exit_code(exit_code);
        let finished_at_s = start.elapsed().as_secs_f64();
        summary.runs.push(CellResult {
            matrix_index: *matrix_index,
            name: cell.name.clone(),
            workload: cell.workload.clone(),
            args: cell.args.clone(),
            outcome,
            exit_code,
            run,
            store: None,
            duration_s: cell_start.elapsed().as_secs_f64(),
            finished_at_s,
        });
        if outcome == Outcome::Invalid && summary.first_invalid_s.is_none() {
            summary.first_invalid_s = Some(finished_at_s);
        }
        summary.duration_s = finished_at_s;
        summary::write(&torture_dir, &summary)?;
        if outcome == Outcome::Invalid && args.fail_fast {
            eprintln!("faultline torture: --fail-fast: stopping at the first invalid run");
            stopped_early = true;
        }
    }
    summary.duration_s = start.elapsed().as_secs_f64();
    summary::write(&torture_dir, &summary)?;
    eprintln!(
        "\n== faultline torture: {} runs in {:.0} s: {} valid, {} invalid, {} unknown, {} vacuous, {} harness \
         failures; {} not run\n   summary: {}",
        summary.runs.len(),
        summary.duration_s,
        summary.count(Outcome::Valid),
        summary.count(Outcome::Invalid),
        summary.count(Outcome::Unknown),
        summary.count(Outcome::Vacuous),
        summary.count(Outcome::HarnessFailure),
        summary.not_run.len(),
        torture_dir.join("index.html").display()
    );
    Ok(summary.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_puts_seeds_outermost_and_passes_test_args_first() {
        let args = TortureArgs {
            command: None,
            matrix: None,
            workloads: "register,set".into(),
            nemeses: "partition,kill;pause".into(),
            seeds: "1,2".into(),
            time_limit: 10,
            budget: 100,
            fail_fast: false,
            run_to_the_end: false,
            shard: None,
            plan: false,
            store: "store".into(),
            scenarios: "scenarios".into(),
            save_scenario: None,
            from: None,
            test_args: vec!["--db".into(), "toy".into()],
        };
        let cells = matrix_cells(&args).unwrap();
        assert_eq!(cells.len(), 8);
        assert_eq!(cells[0].name, "torture-register-partition-kill-s1");
        assert_eq!(cells[3].name, "torture-set-pause-s1");
        assert_eq!(cells[4].name, "torture-register-partition-kill-s2");
        assert_eq!(&cells[0].args[2..4], ["--db", "toy"]);
    }
}
