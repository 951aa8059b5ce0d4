//! `faultline check`: offline linearizability checking of our own and foreign histories.

use anyhow::{bail, Context, Result};

use crate::exit::Exit;
use clap::Args;
use faultline_checker::run::{write_artifact, RunManifest, RunResults};
use faultline_checker::{check_records, read_path, CheckOptions, Format, ModelKind, NilReads, Verdict};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// History files (ours, Jepsen history.edn, porcupine logs) or run directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The model: register, cas-register, kv, string-kv, set, stream; or the transactional
    /// list-append, rw-register (see --consistency). Default: the run's own
    /// (test.json), cas-register for Jepsen logs, string-kv for porcupine kv files.
    #[arg(long, short)]
    pub model: Option<String>,
    /// The input format: jsonl, jepsen-edn, porcupine-kv, jepsen-log. Default: detected.
    #[arg(long)]
    pub format: Option<String>,
    /// Time budget for each history (e.g. 30s, 2m, 500ms); past it the verdict is unknown.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Memory budget for each search (e.g. 2GiB, 512MiB); past it the verdict is unknown.
    #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
    pub memory_limit: u64,
    /// Check all keys as one object instead of one partition per key.
    #[arg(long)]
    pub no_partition: bool,
    /// Keep checking the other keys after one is invalid, to explain every anomaly.
    #[arg(long)]
    pub all_partitions: bool,
    /// Every key's initial value, as JSON (default null: never written).
    #[arg(long, default_value = "null")]
    pub initial_value: String,
    /// Skip bad lines (they are counted) instead of stopping at the first, and accept times that
    /// go backwards with a warning.
    #[arg(long)]
    pub lenient: bool,
    /// What an ok read of nil (null) means: `unknown` (Jepsen's and knossos' meaning: it
    /// constrains nothing) or `strict` (the key was never written). Default: unknown for Jepsen
    /// EDN, strict for everything else.
    #[arg(long)]
    pub nil_reads: Option<String>,
    /// Worker threads for partitions (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Where to write results.json (and check.html when invalid). Default: <run-dir>/recheck/ for
    /// a run directory, faultline-check/<file name>/ for a file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// For --model list-append or rw-register: read-committed, snapshot-isolation, serializable
    /// (default) or strict-serializable.
    #[arg(long)]
    pub consistency: Option<String>,
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("not a size: {text}"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB, GiB)")),
    };
    Ok((number * scale as f64) as u64)
}

/// `--format`: `None` to detect it from the content.
pub(crate) fn parse_format(name: Option<&str>) -> Result<Option<Format>, String> {
    match name {
        None => Ok(None),
        Some(name) => Format::from_name(name)
            .map(Some)
            .ok_or_else(|| format!("unknown --format {name}; one of {}", Format::NAMES.join(", "))),
    }
}

/// What checking one path produced.
struct FileOutcome {
    path: PathBuf,
    result: Result<RunResults>,
}

pub fn run(args: CheckArgs) -> Exit {
    if crate::check_txn::wants(&args) {
        return crate::check_txn::run(args);
    }
    let initial_value: Value = match serde_json::from_str(&args.initial_value) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("faultline check: --initial-value is not JSON: {e}");
            return Exit::BadInput;
        }
    };
    let format = match parse_format(args.format.as_deref()) {
        Ok(format) => format,
        Err(message) => {
            eprintln!("faultline check: {message}");
            return Exit::BadInput;
        }
    };
    if let Some(name) = &args.nil_reads {
        if NilReads::from_name(name).is_none() {
            eprintln!("faultline check: unknown --nil-reads {name}; one of {}", NilReads::NAMES.join(", "));
            return Exit::BadInput;
        }
    }
    if let Some(name) = &args.model {
        if ModelKind::from_name(name).is_none() {
            eprintln!("faultline check: unknown --model {name}; one of {}", ModelKind::NAMES.join(", "));
            return Exit::BadInput;
        }
    }
    let several = args.paths.len() > 1;
    let mut outcomes = Vec::new();
    for path in &args.paths {
        let result = check_one(path, &args, format, &initial_value, several);
        outcomes.push(FileOutcome { path: path.clone(), result });
    }
    report(&outcomes, &args);
    exit_code(&outcomes)
}

fn exit_code(outcomes: &[FileOutcome]) -> Exit {
    let mut exit = Exit::Valid;
    for outcome in outcomes {
        match &outcome.result {
            Err(_) => return Exit::BadInput,
            Ok(results) => exit = exit.worse(Exit::of_verdict(results.verdict)),
        }
    }
    exit
}

/// The model for a path: --model, else the run's own, else the format's usual one.
fn choose_model(args: &CheckArgs, manifest: Option<&RunManifest>, path: &Path, format: Format) -> Result<ModelKind> {
    if let Some(name) = &args.model {
        return ModelKind::from_name(name).context("unknown model");
    }
    if let Some(model) = manifest.and_then(|m| ModelKind::from_name(&m.model)) {
        return Ok(model);
    }
    match format {
        Format::JepsenLog => Ok(ModelKind::CasRegister),
        Format::PorcupineKv => Ok(ModelKind::StringKv),
        _ => bail!("{}: name a model with --model ({})", path.display(), ModelKind::NAMES.join(", ")),
    }
}

fn check_one(
    path: &Path,
    args: &CheckArgs,
    format: Option<Format>,
    initial_value: &Value,
    several: bool,
) -> Result<RunResults> {
    let imported = read_path(path, format, args.lenient)?;
    let manifest = run_manifest(path)?;
    let model = match choose_model(args, manifest.as_ref(), path, imported.format) {
        Ok(model) => model,
        // An empty history needs no model: its verdict is "no operations" whatever the model.
        Err(_) if imported.records.is_empty() => ModelKind::Kv,
        Err(e) => return Err(e),
    };
    let options = CheckOptions {
        model,
        initial_value: initial_value.clone(),
        timeout: args.timeout,
        memory_limit_bytes: args.memory_limit,
        partition: !args.no_partition,
        threads: args.threads,
        lenient: args.lenient,
        explain: true,
        all_partitions: args.all_partitions,
        source_name: faultline_checker::import::history_path(path).display().to_string(),
        nil_reads: args.nil_reads.as_deref().and_then(NilReads::from_name).unwrap_or(imported.format.nil_reads()),
        ladder: true,
        times_known: imported.has_times,
        ladder_timeout: args.timeout.unwrap_or(faultline_checker::check::LADDER_DEFAULT_TIMEOUT),
    };
    // A run of a mixed workload: the run's model judges its register keys, the direct checks
    // (judge below) the stream keys; an explicit --model sees every record.
    let workload = manifest.as_ref().and_then(|m| m.workload()).and_then(faultline_workloads::WorkloadKind::from_name);
    let main_workload = if args.model.is_none() { workload } else { None };
    let main_records: Vec<_> =
        imported.records.iter().filter(|r| crate::judge::in_main_check(main_workload, &r.record)).cloned().collect();
    let mut result = check_records(&main_records, &options)?;
    result.skipped_lines += imported.skipped.len();
    // A run directory is re-checked as the harness checked it, through the one check path: with
    // its workload's direct checkers too (set-full, append), whose verdicts combine with the model's.
    let records: Vec<_> = imported.records.iter().map(|r| r.record.clone()).collect();
    let evidence = crate::judge::Evidence { workload, ..crate::judge::Evidence::default() };
    let mut results = crate::judge::judge(&records, Ok(result), evidence);
    results.history = Some(path.display().to_string());
    results.skipped = imported.skipped.iter().map(|e| e.to_string()).collect();
    results.warnings = imported.warnings.iter().map(|e| e.to_string()).collect();
    let out_dir = output_dir(path, args, several);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    crate::judge::write_check_html(&mut results, &out_dir, &path.display().to_string())?;
    let results_path = out_dir.join("results.json");
    write_artifact(&results_path, &results).with_context(|| format!("writing {}", results_path.display()))?;
    if !args.json {
        for warning in &imported.warnings {
            eprintln!("warning: {warning}");
        }
        for check in &results.workload_checks {
            println!("  {} ({}): {}", check.checker, check.verdict.as_str(), check.summary);
        }
    }
    Ok(results)
}

/// A run directory's test.json, read once, if it has one. A test.json that is there but cannot be
/// read is an error, not a run without a manifest.
fn run_manifest(path: &Path) -> Result<Option<RunManifest>> {
    if !path.is_dir() || !path.join("test.json").exists() {
        return Ok(None);
    }
    Ok(Some(RunManifest::read(path)?))
}

pub(crate) fn output_dir(path: &Path, args: &CheckArgs, several: bool) -> PathBuf {
    let stem = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "history".into());
    match (&args.out, path.is_dir()) {
        (Some(out), _) if several => out.join(stem),
        (Some(out), _) => out.clone(),
        // The run's own results.json belongs to the harness (vacuity, op counts, workload checks):
        // a re-check goes next to it, not over it.
        (None, true) => path.join("recheck"),
        (None, false) => PathBuf::from("faultline-check").join(stem),
    }
}

fn report(outcomes: &[FileOutcome], args: &CheckArgs) {
    if args.json {
        let files: Vec<Value> = outcomes
            .iter()
            .map(|o| match &o.result {
                Ok(results) => {
                    let mut v = serde_json::to_value(results.checker.result()).unwrap_or(Value::Null);
                    v["verdict"] = json!(results.verdict);
                    v["path"] = json!(o.path.display().to_string());
                    v["html"] = json!(results.checker.html().map(|h| h.display().to_string()));
                    v
                }
                Err(e) => json!({"path": o.path.display().to_string(), "verdict": "error", "error": format!("{e:#}")}),
            })
            .collect();
        let document = json!({"files": files, "summary": summary_counts(outcomes)});
        println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
        return;
    }
    let single = outcomes.len() == 1;
    for outcome in outcomes {
        match &outcome.result {
            Err(e) => println!("error    {}  {e:#}", outcome.path.display()),
            Ok(results) => {
                let Some(result) = results.checker.result() else { continue };
                let html = results.checker.html();
                println!(
                    "{:<8} {}  {} events  {:.1} ms{}",
                    results.verdict.as_str(),
                    outcome.path.display(),
                    result.events,
                    result.check_ms,
                    result.reason.as_ref().map(|r| format!("  ({r})")).unwrap_or_default()
                );
                if result.nil_reads_unconstrained > 0 {
                    println!(
                        "  {} ok reads of nil constrain nothing (Jepsen's meaning; --nil-reads strict reads them as \
                         \"never written\")",
                        result.nil_reads_unconstrained
                    );
                }
                if let Some(ladder) = &result.ladder {
                    println!("  {}", ladder.summary);
                }
                if single {
                    for anomaly in &result.anomalies {
                        print!("{}", anomaly.text);
                    }
                    if result.skipped_lines > 0 {
                        println!("  {} bad lines skipped (--lenient)", result.skipped_lines);
                    }
                    if let Some(html) = html {
                        println!("  timeline: {}", html.display());
                    }
                }
            }
        }
    }
    if !single {
        let counts = summary_counts(outcomes);
        println!(
            "{} histories: {} valid, {} invalid, {} unknown, {} errors; {:.1} ms checking",
            outcomes.len(),
            counts["valid"],
            counts["invalid"],
            counts["unknown"],
            counts["error"],
            counts["check_ms"].as_f64().unwrap_or(0.0)
        );
    }
}

fn summary_counts(outcomes: &[FileOutcome]) -> Value {
    let (mut valid, mut invalid, mut unknown, mut error, mut check_ms) = (0, 0, 0, 0, 0.0);
    for o in outcomes {
        match &o.result {
            Err(_) => error += 1,
            Ok(results) => {
                check_ms += results.checker.result().map_or(0.0, |r| r.check_ms);
                match results.verdict {
                    Verdict::Valid => valid += 1,
                    Verdict::Invalid => invalid += 1,
                    Verdict::Unknown => unknown += 1,
                }
            }
        }
    }
    json!({"valid": valid, "invalid": invalid, "unknown": unknown, "error": error, "check_ms": check_ms})
}
