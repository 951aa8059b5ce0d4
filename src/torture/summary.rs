//! torture.json, one serde type (`TortureSummary`) with a format version, and the two views
//! rendered from it: junit.xml for CI and index.html for people. `faultline torture` writes it,
//! `faultline torture merge` reads shards' summaries back through `read` and writes a merged one.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::shard::{MatrixIdentity, Shard};
use crate::exit::Exit;

/// torture.json's format. 1 was the untyped summary before sharding (no version field).
pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TortureSummary {
    pub format_version: u32,
    pub build: Build,
    /// The whole matrix this summary is (a share of).
    pub matrix: MatrixIdentity,
    /// `--shard K/N`; None for an unsharded matrix and for a merge of shards.
    pub shard: Option<Shard>,
    /// For a merge: the shards' summaries it was made of, in shard order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
    /// The cells this summary was to run, in matrix order (all of them unless sharded).
    pub planned: Vec<PlannedCell>,
    pub runs: Vec<CellResult>,
    /// Planned cells that did not run (budget or --fail-fast), in matrix order.
    pub not_run: Vec<String>,
    /// Wall time of the matrix; for a merge, the longest shard's.
    pub duration_s: f64,
    /// Seconds from the start of the matrix to the first invalid verdict; for a merge, the
    /// earliest over the shards (each counted from its own start).
    pub first_invalid_s: Option<f64>,
}

/// What ran the matrix: shards run by different builds do not merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub faultline_version: String,
    pub git_revision: Option<String>,
}

impl Build {
    pub fn current() -> Build {
        Build {
            faultline_version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: crate::run_store::git_revision(),
        }
    }
}

impl std::fmt::Display for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "faultline {} at {}",
            self.faultline_version,
            self.git_revision.as_deref().unwrap_or("an unknown revision")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedShard {
    pub shard: Shard,
    /// The shard's summary directory, as given to merge.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCell {
    /// Position in the expanded matrix (the shard assignment's input).
    pub matrix_index: usize,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Valid,
    Invalid,
    Unknown,
    Vacuous,
    HarnessFailure,
}

impl Outcome {
    pub fn from_exit_code(code: Option<i32>) -> Outcome {
        match code.and_then(Exit::from_code) {
            Some(Exit::Valid) => Outcome::Valid,
            Some(Exit::Invalid) => Outcome::Invalid,
            Some(Exit::Unknown) => Outcome::Unknown,
            Some(Exit::Vacuous) => Outcome::Vacuous,
            _ => Outcome::HarnessFailure,
        }
    }

    /// The name torture.json uses (serde's), also the CSS class in index.html.
    fn as_str(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub matrix_index: usize,
    pub name: String,
    pub workload: String,
    pub args: Vec<String>,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    /// The run directory relative to its store; None when the run never created one.
    pub run: Option<String>,
    /// The store holding `run`, relative to this summary's directory, when it is not the store
    /// this summary lives in (`<store>/torture/<stamp>/`, so `../..`): set by merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    pub duration_s: f64,
    /// Seconds from the start of the matrix to the end of this run (its verdict included).
    pub finished_at_s: f64,
}

impl CellResult {
    /// The run's report, relative to the summary's directory.
    fn report_link(&self) -> Option<String> {
        let run = self.run.as_deref()?;
        Some(format!("{}/{run}/index.html", self.store.as_deref().unwrap_or("../..")))
    }
}

impl TortureSummary {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.runs.iter().filter(|r| r.outcome == outcome).count()
    }

    /// The matrix's exit code: 1 if any run was invalid; else 2 if any was unknown; else 4 if any
    /// was a harness failure or nothing ran; else 0.
    pub fn exit_code(&self) -> Exit {
        if self.count(Outcome::Invalid) > 0 {
            Exit::Invalid
        } else if self.count(Outcome::Unknown) > 0 {
            Exit::Unknown
        } else if self.count(Outcome::HarnessFailure) > 0 || self.runs.is_empty() {
            Exit::HarnessFailure
        } else {
            Exit::Valid
        }
    }
}

/// Writes torture.json, junit.xml and index.html into `dir`.
pub fn write(dir: &Path, summary: &TortureSummary) -> Result<()> {
    std::fs::write(dir.join("torture.json"), serde_json::to_string_pretty(summary)?)
        .with_context(|| format!("writing {}", dir.join("torture.json").display()))?;
    std::fs::write(dir.join("junit.xml"), junit_xml(summary))?;
    std::fs::write(dir.join("index.html"), index_html(summary))?;
    Ok(())
}

/// Reads a torture.json; one of another format version is refused with both versions named.
pub fn read(path: &Path) -> Result<TortureSummary> {
    /// Only the version, so that a summary of another format gets a clear refusal rather than
    /// the first field serde could not find.
    #[derive(Deserialize)]
    struct VersionOnly {
        format_version: Option<u32>,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let version = serde_json::from_str::<VersionOnly>(&text)
        .with_context(|| format!("parsing {}", path.display()))?
        .format_version
        .unwrap_or(1);
    if version != FORMAT_VERSION {
        bail!(
            "{} is torture.json format {version}; this faultline reads format {FORMAT_VERSION} \
             (re-run the matrix with this version)",
            path.display()
        );
    }
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn junit_xml(summary: &TortureSummary) -> String {
    let skipped = summary.count(Outcome::Vacuous) + summary.count(Outcome::Unknown);
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"faultline torture\" tests=\"{}\" \
         failures=\"{}\" errors=\"{}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        summary.runs.len(),
        summary.count(Outcome::Invalid),
        summary.count(Outcome::HarnessFailure),
        summary.duration_s
    );
    for r in &summary.runs {
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

pub fn index_html(summary: &TortureSummary) -> String {
    let mut rows = String::new();
    for r in &summary.runs {
        let outcome = r.outcome.as_str();
        let outcome = outcome.as_str();
        let link = match (&r.run, r.report_link()) {
            (Some(run), Some(href)) => format!("<a href=\"{}\">{}</a>", escape(&href), escape(run)),
            _ => "(no run directory)".to_string(),
        };
        rows += &format!(
            "<tr class=\"{outcome}\"><td>{}</td><td>{outcome}</td><td>{:.0} s</td><td>{:.0} s</td><td>{link}</td></tr>\n",
            escape(&r.name),
            r.duration_s,
            r.finished_at_s
        );
    }
    let not_run_html = if summary.not_run.is_empty() {
        String::new()
    } else {
        format!("<p>Not run (budget or --fail-fast): {}</p>", escape(&summary.not_run.join(", ")))
    };
    let what = match (summary.shard, summary.merged_from.len()) {
        (Some(shard), _) => {
            format!("Shard {shard} of matrix {} ({} cells in all).", escape(&summary.matrix.hash), summary.matrix.cells)
        }
        (None, 0) => format!("Matrix {} ({} cells).", escape(&summary.matrix.hash), summary.matrix.cells),
        (None, n) => format!(
            "Merge of {n} shards of matrix {} ({} cells): {}.",
            escape(&summary.matrix.hash),
            summary.matrix.cells,
            escape(&summary.merged_from.iter().map(|m| m.summary.as_str()).collect::<Vec<_>>().join(", "))
        ),
    };
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>faultline torture</title><style>\
         body{{font-family:sans-serif;margin:2em}} td,th{{padding:0.2em 1em;text-align:left}} \
         .invalid{{background:#fdd}} .harness-failure{{background:#fe9}} .unknown,.vacuous{{background:#eee}}\
         </style></head><body>\n<h1>faultline torture</h1>\n<p>{what} {} runs in {:.0} s.</p>\n<table>\n\
         <tr><th>run</th><th>outcome</th><th>duration</th><th>done at</th><th>report</th></tr>\n{rows}</table>\n\
         {not_run_html}\n</body></html>\n",
        summary.runs.len(),
        summary.duration_s
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn result(matrix_index: usize, name: &str, outcome: Outcome) -> CellResult {
        CellResult {
            matrix_index,
            name: name.into(),
            workload: "register".into(),
            args: vec![],
            outcome,
            exit_code: Some(0),
            run: Some(format!("{name}/2026")),
            store: None,
            duration_s: 1.0,
            finished_at_s: 1.0,
        }
    }

    pub(crate) fn summary(runs: Vec<CellResult>) -> TortureSummary {
        let planned = runs.iter().map(|r| PlannedCell { matrix_index: r.matrix_index, name: r.name.clone() }).collect();
        TortureSummary {
            format_version: FORMAT_VERSION,
            build: Build { faultline_version: "0.1.0".into(), git_revision: Some("abc".into()) },
            matrix: MatrixIdentity { hash: "fnv1a64:0000000000000001".into(), cells: runs.len() },
            shard: None,
            merged_from: vec![],
            planned,
            runs,
            not_run: vec![],
            duration_s: 5.0,
            first_invalid_s: None,
        }
    }

    #[test]
    fn junit_has_one_testcase_per_run_and_marks_each_outcome() {
        let summary = summary(vec![
            result(0, "a", Outcome::Valid),
            result(1, "b", Outcome::Invalid),
            result(2, "c", Outcome::HarnessFailure),
            result(3, "d", Outcome::Vacuous),
            result(4, "e<&>", Outcome::Unknown),
        ]);
        let xml = junit_xml(&summary);
        assert_eq!(xml.matches("<testcase ").count(), 5);
        assert_eq!(xml.matches("<failure ").count(), 1);
        assert_eq!(xml.matches("<error ").count(), 1);
        assert_eq!(xml.matches("<skipped ").count(), 2);
        assert!(xml.contains("tests=\"5\" failures=\"1\" errors=\"1\" skipped=\"2\""));
        assert!(xml.contains("e&lt;&amp;&gt;"));
    }

    #[test]
    fn the_summary_survives_its_json_form_and_links_runs_through_their_store() {
        let mut merged = summary(vec![result(0, "a", Outcome::Valid), result(1, "b", Outcome::Invalid)]);
        merged.runs[1].store = Some("../shards/shard-2".into());
        let json = serde_json::to_string(&merged).unwrap();
        assert_eq!(serde_json::from_str::<TortureSummary>(&json).unwrap(), merged);
        assert_eq!(Outcome::from_exit_code(Some(1)), merged.runs[1].outcome);
        assert!(json.contains("\"outcome\":\"invalid\""), "{json}");
        let html = index_html(&merged);
        assert!(html.contains("href=\"../../a/2026/index.html\""), "{html}");
        assert!(html.contains("href=\"../shards/shard-2/b/2026/index.html\""), "{html}");
        assert_eq!(merged.exit_code(), Exit::Invalid);
    }

    #[test]
    fn a_summary_of_another_format_version_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("faultline-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("torture.json");
        std::fs::write(&path, r#"{"runs": [], "not_run": [], "duration_s": 1.0, "first_invalid_s": null}"#).unwrap();
        let error = format!("{:#}", read(&path).unwrap_err());
        assert!(error.contains("format 1; this faultline reads format 2"), "{error}");
        write(&dir, &summary(vec![result(0, "a", Outcome::Valid)])).unwrap();
        assert_eq!(read(&path).unwrap().runs[0].name, "a");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
