//! `faultline check --model list-append|rw-register [--consistency ...]`: the transactional
//! checker's command line. `check_cmd.rs` hands over to `run` when a transactional model (or a
//! consistency model) is named; the rest of `faultline check` is untouched.

use anyhow::{bail, Context, Result};
use faultline_checker::import::{detect_format, history_path, read_path};
use faultline_checker::txn::{self, Consistency, TxnCheckResult, TxnHistoryBuilder, TxnModel, TxnOptions};
use faultline_checker::{Format, Verdict};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::check_cmd::{output_dir, CheckArgs};
use crate::exit::Exit;

/// Whether `faultline check` should be handled here.
pub fn wants(args: &CheckArgs) -> bool {
    args.consistency.is_some() || args.model.as_deref().is_some_and(|m| TxnModel::from_name(m).is_some())
}

pub fn run(args: CheckArgs) -> Exit {
    let model = match args.model.as_deref().map(|m| (m, TxnModel::from_name(m))) {
        Some((_, Some(model))) => model,
        other => {
            let named = other.map(|(m, _)| format!(" (not {m})")).unwrap_or_default();
            eprintln!(
                "faultline check: --consistency needs a transactional --model: {}{named}",
                TxnModel::NAMES.join(", ")
            );
            return Exit::BadInput;
        }
    };
    let consistency = match args.consistency.as_deref() {
        None => Consistency::Serializable,
        Some(name) => match Consistency::from_name(name) {
            Some(c) => c,
            None => {
                eprintln!("faultline check: unknown --consistency {name}; one of {}", Consistency::NAMES.join(", "));
                return Exit::BadInput;
            }
        },
    };
    let format = match crate::check_cmd::parse_format(args.format.as_deref()) {
        Ok(format) => format,
        Err(message) => {
            eprintln!("faultline check: {message}");
            return Exit::BadInput;
        }
    };
    if args.lenient || args.no_partition || args.all_partitions {
        eprintln!("faultline check: --lenient, --no-partition and --all-partitions are for single-object models");
        return Exit::BadInput;
    }
    let several = args.paths.len() > 1;
    let mut code = Exit::Valid;
    let mut files = Vec::new();
    for path in &args.paths {
        let options = TxnOptions {
            model,
            consistency,
            timeout: args.timeout,
            memory_limit_bytes: args.memory_limit,
            source_name: history_path(path).display().to_string(),
            ..TxnOptions::default()
        };
        match check_one(path, format, &options, &output_dir(path, &args, several)) {
            Err(e) => {
                code = Exit::BadInput;
                if args.json {
                    files.push(
                        json!({"path": path.display().to_string(), "verdict": "error", "error": format!("{e:#}")}),
                    );
                } else {
                    println!("error    {}  {e:#}", path.display());
                }
            }
            Ok((result, html)) => {
                code = match (code, result.verdict) {
                    (Exit::BadInput, _) => Exit::BadInput,
                    (_, Verdict::Invalid) | (Exit::Invalid, _) => Exit::Invalid,
                    (_, Verdict::Unknown) | (Exit::Unknown, _) => Exit::Unknown,
                    _ => Exit::Valid,
                };
                if args.json {
                    let mut value = serde_json::to_value(&result).unwrap_or(Value::Null);
                    value["path"] = json!(path.display().to_string());
                    value["html"] = json!(html.as_ref().map(|h| h.display().to_string()));
                    files.push(value);
                } else {
                    print_text(path, &result, html.as_deref());
                }
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "files": files })).unwrap_or_default());
    }
    code
}

fn print_text(path: &Path, result: &TxnCheckResult, html: Option<&Path>) {
    println!(
        "{:<8} {}  {} {} txns checked for {}  {:.1} ms",
        result.verdict.as_str(),
        path.display(),
        result.txns,
        result.model.name(),
        result.consistency.name(),
        result.check_ms
    );
    if !result.weaker_models_holding.is_empty() {
        let names: Vec<&str> = result.weaker_models_holding.iter().map(|c| c.name()).collect();
        println!("  still holds: {}", names.join(", "));
    }
    print!("{}", result.text());
    if let Some(html) = html {
        println!("  explanation: {}", html.display());
    }
}

/// Reads the history (our JSON Lines streamed record by record, so that a large history is never
/// held as JSON values; other formats through the importers), checks it, writes results.json and,
/// when invalid, check.html.
fn check_one(
    path: &Path,
    format: Option<Format>,
    options: &TxnOptions,
    out_dir: &Path,
) -> Result<(TxnCheckResult, Option<PathBuf>)> {
    let file = history_path(path);
    let format = match format {
        Some(format) => format,
        None => {
            let mut head = Vec::new();
            let opened = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            opened.take(64 << 10).read_to_end(&mut head)?;
            detect_format(&String::from_utf8_lossy(&head)).unwrap_or(Format::Jsonl)
        }
    };
    let mut builder = TxnHistoryBuilder::new(options.model, file.display().to_string());
    if format == Format::Jsonl {
        let opened = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, opened);
        let (mut text, mut line) = (String::new(), 0);
        loop {
            text.clear();
            if reader.read_line(&mut text).with_context(|| format!("reading {}", file.display()))? == 0 {
                break;
            }
            line += 1;
            let trimmed = text.trim();
            if !trimmed.is_empty() {
                builder.push_json_line(trimmed, line)?;
            }
        }
    } else {
        let imported = read_path(path, Some(format), false)?;
        for record in &imported.records {
            builder.push(record)?;
        }
    }
    let history = builder.finish()?;
    if history.txns.is_empty() {
        bail!("{}: no :txn operations", file.display());
    }
    let result = txn::check_history(&history, options);
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut document = serde_json::to_value(&result)?;
    document["history"] = json!(file.display().to_string());
    let results_path = out_dir.join("results.json");
    std::fs::write(&results_path, serde_json::to_string_pretty(&document)? + "\n")
        .with_context(|| format!("writing {}", results_path.display()))?;
    if result.verdict != Verdict::Invalid {
        return Ok((result, None));
    }
    let html_path = out_dir.join("check.html");
    std::fs::write(&html_path, txn::html::render(&result, &file.display().to_string()))
        .with_context(|| format!("writing {}", html_path.display()))?;
    Ok((result, Some(html_path)))
}
