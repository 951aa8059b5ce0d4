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

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::run_store;
use crate::test_cmd::{EXIT_HARNESS_FAILURE, EXIT_INVALID, EXIT_UNKNOWN, EXIT_VACUOUS, EXIT_VALID};

#[derive(clap::Args, Debug)]
pub struct TortureArgs {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    Valid,
    Invalid,
    Unknown,
    Vacuous,
    HarnessFailure,
}

impl Outcome {
    fn from_exit_code(code: Option<i32>) -> Outcome {
        match code {
            Some(EXIT_VALID) => Outcome::Valid,
            Some(EXIT_INVALID) => Outcome::Invalid,
            Some(EXIT_UNKNOWN) => Outcome::Unknown,
            Some(EXIT_VACUOUS) => Outcome::Vacuous,
            _ => Outcome::HarnessFailure,
        }
    }
}

#[derive(Debug, Serialize)]
struct CellResult {
    name: String,
    workload: String,
    args: Vec<String>,
    outcome: Outcome,
    exit_code: Option<i32>,
    /// The run directory relative to the store; None when the run never created one.
    run: Option<String>,
    duration_s: f64,
    /// Seconds from the start of the matrix to the end of this run (its verdict included).
    finished_at_s: f64,
}

pub fn run(args: TortureArgs) -> i32 {
    let result = match (&args.save_scenario, &args.from) {
        (Some(name), Some(from)) => save_scenario(&args.scenarios, name, from).map(|_| 0),
        _ => run_matrix(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("faultline torture: {e:#}");
            EXIT_HARNESS_FAILURE
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
    let path = from.join("test.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let test_json: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let seed = test_json.get("seed").and_then(Value::as_u64).context("test.json has no seed")?;
    let Some(Value::Object(options)) = test_json.get("options") else { bail!("test.json has no options") };
    // TOML has no null, and its integers are i64: unset options are left out, the seed is a string.
    let mut table = toml::Table::new();
    for (key, value) in options {
        if value.is_null() || NOT_SCENARIO_OPTIONS.contains(&key.as_str()) {
            continue;
        }
        let value = toml::Value::try_from(value).with_context(|| format!("option {key} in TOML"))?;
        table.insert(key.clone(), value);
    }
    let verdict = std::fs::read_to_string(from.join("results.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|r| r.get("verdict").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| "no verdict".to_string());
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
        args.extend(crate::test_cmd::options_to_argv(&options).with_context(|| format!("{}", path.display()))?);
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

fn run_matrix(args: &TortureArgs) -> Result<i32> {
    let mut cells = matrix_cells(args)?;
    cells.extend(scenario_cells(&args.scenarios)?);
    if !args.run_to_the_end {
        for cell in &mut cells {
            if !cell.args.iter().any(|a| a == "--stop-on-invalid") {
                cell.args.push("--stop-on-invalid".to_string());
            }
        }
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
        "faultline torture: {} runs planned, budget {budget} s; summary in {}",
        cells.len(),
        torture_dir.display()
    );
    let start = Instant::now();
    let mut results: Vec<CellResult> = Vec::new();
    let mut not_run: Vec<String> = Vec::new();
    let mut stopped_early = false;
    for (i, cell) in cells.iter().enumerate() {
        let elapsed = start.elapsed().as_secs();
        if stopped_early || elapsed + cell.time_limit + RUN_OVERHEAD_S > budget {
            not_run.push(cell.name.clone());
            continue;
        }
        eprintln!(
            "\n== faultline torture: run {}/{}: {} ({} s into the matrix)",
            i + 1,
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
        results.push(CellResult {
            name: cell.name.clone(),
            workload: cell.workload.clone(),
            args: cell.args.clone(),
            outcome,
            exit_code,
            run,
            duration_s: cell_start.elapsed().as_secs_f64(),
            finished_at_s: start.elapsed().as_secs_f64(),
        });
        write_summary(&torture_dir, &results, &not_run, start.elapsed().as_secs_f64())?;
        if outcome == Outcome::Invalid && args.fail_fast {
            eprintln!("faultline torture: --fail-fast: stopping at the first invalid run");
            stopped_early = true;
        }
    }
    let total_s = start.elapsed().as_secs_f64();
    write_summary(&torture_dir, &results, &not_run, total_s)?;
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    eprintln!(
        "\n== faultline torture: {} runs in {total_s:.0} s: {} valid, {} invalid, {} unknown, {} vacuous, {} harness \
         failures; {} not run\n   summary: {}",
        results.len(),
        count(Outcome::Valid),
        count(Outcome::Invalid),
        count(Outcome::Unknown),
        count(Outcome::Vacuous),
        count(Outcome::HarnessFailure),
        not_run.len(),
        torture_dir.join("index.html").display()
    );
    Ok(if count(Outcome::Invalid) > 0 {
        EXIT_INVALID
    } else if count(Outcome::Unknown) > 0 {
        EXIT_UNKNOWN
    } else if count(Outcome::HarnessFailure) > 0 || results.is_empty() {
        EXIT_HARNESS_FAILURE
    } else {
        EXIT_VALID
    })
}

fn write_summary(dir: &Path, results: &[CellResult], not_run: &[String], total_s: f64) -> Result<()> {
    let first_invalid_s = results.iter().find(|r| r.outcome == Outcome::Invalid).map(|r| r.finished_at_s);
    let summary = json!({
        "runs": results,
        "not_run": not_run,
        "duration_s": total_s,
        "first_invalid_s": first_invalid_s,
    });
    std::fs::write(dir.join("torture.json"), serde_json::to_string_pretty(&summary)?)?;
    std::fs::write(dir.join("junit.xml"), junit_xml(results, total_s))?;
    std::fs::write(dir.join("index.html"), index_html(results, not_run, total_s))?;
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn junit_xml(results: &[CellResult], total_s: f64) -> String {
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let skipped = count(Outcome::Vacuous) + count(Outcome::Unknown);
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"faultline torture\" tests=\"{}\" \
         failures=\"{}\" errors=\"{}\" skipped=\"{skipped}\" time=\"{total_s:.3}\">\n",
        results.len(),
        count(Outcome::Invalid),
        count(Outcome::HarnessFailure)
    );
    for r in results {
        let run = r.run.as_deref().unwrap_or("(no run directory)");
        xml += &format!(
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">\n",
            escape(&r.workload),
            escape(&r.name),
            r.duration_s
        );
        let body = match r.outcome {
            Outcome::Valid => String::new(),
            Outcome::Invalid => {
                format!("    <failure message=\"invalid: see {}\">{}</failure>\n", escape(run), escape(run))
            }
            Outcome::HarnessFailure => {
                format!("    <error message=\"harness failure (exit {:?})\">{}</error>\n", r.exit_code, escape(run))
            }
            Outcome::Unknown => {
                format!("    <skipped message=\"unknown: the checker gave no verdict; see {}\"/>\n", escape(run))
            }
            Outcome::Vacuous => format!(
                "    <skipped message=\"vacuous: no fault fired or too few ops succeeded; see {}\"/>\n",
                escape(run)
            ),
        };
        xml += &body;
        xml += "  </testcase>\n";
    }
    xml += "</testsuite>\n</testsuites>\n";
    xml
}

fn index_html(results: &[CellResult], not_run: &[String], total_s: f64) -> String {
    let mut rows = String::new();
    for r in results {
        let outcome =
            serde_json::to_value(r.outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        // The summary lives in <store>/torture/<stamp>/, runs in <store>/<name>/<stamp>/.
        let link = match &r.run {
            Some(run) => format!("<a href=\"../../{0}/index.html\">{0}</a>", escape(run)),
            None => "(no run directory)".to_string(),
        };
        rows += &format!(
            "<tr class=\"{outcome}\"><td>{}</td><td>{outcome}</td><td>{:.0} s</td><td>{:.0} s</td><td>{link}</td></tr>\n",
            escape(&r.name),
            r.duration_s,
            r.finished_at_s
        );
    }
    let not_run_html = if not_run.is_empty() {
        String::new()
    } else {
        format!("<p>Not run (budget or --fail-fast): {}</p>", escape(&not_run.join(", ")))
    };
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>faultline torture</title><style>\
         body{{font-family:sans-serif;margin:2em}} td,th{{padding:0.2em 1em;text-align:left}} \
         .invalid{{background:#fdd}} .harness-failure{{background:#fe9}} .unknown,.vacuous{{background:#eee}}\
         </style></head><body>\n<h1>faultline torture</h1>\n<p>{} runs in {total_s:.0} s.</p>\n<table>\n\
         <tr><th>run</th><th>outcome</th><th>duration</th><th>done at</th><th>report</th></tr>\n{rows}</table>\n\
         {not_run_html}\n</body></html>\n",
        results.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, outcome: Outcome) -> CellResult {
        CellResult {
            name: name.into(),
            workload: "register".into(),
            args: vec![],
            outcome,
            exit_code: Some(0),
            run: Some(format!("{name}/2026")),
            duration_s: 1.0,
            finished_at_s: 1.0,
        }
    }

    #[test]
    fn junit_has_one_testcase_per_run_and_marks_each_outcome() {
        let results = [
            result("a", Outcome::Valid),
            result("b", Outcome::Invalid),
            result("c", Outcome::HarnessFailure),
            result("d", Outcome::Vacuous),
            result("e<&>", Outcome::Unknown),
        ];
        let xml = junit_xml(&results, 5.0);
        assert_eq!(xml.matches("<testcase ").count(), 5);
        assert_eq!(xml.matches("<failure ").count(), 1);
        assert_eq!(xml.matches("<error ").count(), 1);
        assert_eq!(xml.matches("<skipped ").count(), 2);
        assert!(xml.contains("tests=\"5\" failures=\"1\" errors=\"1\" skipped=\"2\""));
        assert!(xml.contains("e&lt;&amp;&gt;"));
    }

    #[test]
    fn the_matrix_puts_seeds_outermost_and_passes_test_args_first() {
        let args = TortureArgs {
            matrix: None,
            workloads: "register,set".into(),
            nemeses: "partition,kill;pause".into(),
            seeds: "1,2".into(),
            time_limit: 10,
            budget: 100,
            fail_fast: false,
            run_to_the_end: false,
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
