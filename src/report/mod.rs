//! The report a person reads, rendered from a run directory: index.html (verdict, options, seed,
//! op counts, faults, checkers, links), timeline.html (every op as a bar per worker, fault windows
//! shaded, the failing window highlighted), latency.svg and rate.svg. Every file is
//! self-contained: no external script, font or stylesheet.
//!
//! **Invariant:** the report only reads the run directory's files (history.jsonl, test.json,
//! results.json) and writes its own; it never changes what the harness recorded, so it can be
//! re-rendered at any time with `faultline report <run-dir>`.

pub mod data;
pub mod html;
pub mod plots;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

pub use data::RunData;

/// What a rendering did, for the caller's summary line.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub index: PathBuf,
    pub ops: usize,
    pub timeline_ops: usize,
    pub elapsed_ms: f64,
}

/// Renders (or re-renders) the report of the run in `dir` from its history.jsonl, test.json and
/// results.json (the last two may be missing: a report of an unfinished run says so).
pub fn render_run(dir: &Path) -> Result<Rendered> {
    let started = Instant::now();
    let data = RunData::load(dir).with_context(|| format!("reading the run in {}", dir.display()))?;
    let write = |name: &str, content: String| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))
    };
    write("latency.svg", plots::latency_svg(&data)?)?;
    write("rate.svg", plots::rate_svg(&data)?)?;
    write("timeline.html", html::timeline_html(&data))?;
    write("index.html", html::index_html(&data, &linked_files(dir)))?;
    let (first, end) = html::timeline_range(&data);
    Ok(Rendered {
        index: dir.join("index.html"),
        ops: data.ops.len(),
        timeline_ops: end - first,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// The files the index links to: the report's pages, then the record and logs that exist.
fn linked_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = vec!["timeline.html".into(), "latency.svg".into(), "rate.svg".into()];
    for name in ["check.html", "results.json", "test.json", "history.jsonl", "faultline.log"] {
        if dir.join(name).exists() {
            files.push(name.to_string());
        }
    }
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|name| name.ends_with(".log") && name != "faultline.log")
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    files.extend(logs);
    files
}

/// `faultline report <run-dir>`: (re)renders a run's report; exit 0, or 4 when it cannot.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The run directory (store/<test>/<timestamp>, or store/latest).
    pub run_dir: PathBuf,
}

pub fn run(args: ReportArgs) -> crate::exit::Exit {
    match render_run(&args.run_dir) {
        Ok(rendered) => {
            println!(
                "report: {} ({} ops, {} on the timeline, {:.0} ms)",
                rendered.index.display(),
                rendered.ops,
                rendered.timeline_ops,
                rendered.elapsed_ms
            );
            crate::exit::Exit::Valid
        }
        Err(e) => {
            eprintln!("faultline report: {e:#}");
            crate::exit::Exit::HarnessFailure
        }
    }
}
