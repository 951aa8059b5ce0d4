//! `faultline torture merge DIR…`: the summaries of the shards of one matrix (each the store of a
//! `faultline torture --shard K/N`) made into one torture.json, junit.xml and index.html.
//!
//! Phases: find each shard's summary and read it through `summary::read` (IO) → `merge_summaries`
//! (pure: refuses shards that are missing, given twice, of another matrix or build, or whose cells
//! are not the ones their `K/N` assigns; else one summary in matrix order) → `summary::write`.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::shard::{MatrixIdentity, Shard};
use super::summary::{self, Build, MergedShard, TortureSummary, FORMAT_VERSION};

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The shards' stores (each the --store of one `faultline torture --shard K/N`), or their
    /// summary directories (<store>/torture/<stamp>/).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Directory for the merged torture.json, junit.xml and index.html (links to the shards'
    /// runs are relative, so keep it beside the shard stores when moving them).
    #[arg(long, default_value = "merged")]
    pub out: PathBuf,
}

/// One shard's summary as merge sees it.
#[derive(Debug, Clone)]
pub struct ShardSummary {
    /// How the user named it (the directory given to merge).
    pub label: String,
    /// The shard's store, relative to the merged summary's directory.
    pub store_link: String,
    pub summary: TortureSummary,
}

/// Why shards do not merge; every variant names the shard(s) at fault.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeError {
    NoShards,
    NotAShard { label: String },
    AlreadyMerged { label: String },
    DifferentShardCount { first_label: String, first: Shard, label: String, shard: Shard },
    DifferentBuild { first_label: String, first: Box<Build>, label: String, shard: Shard, build: Box<Build> },
    DifferentMatrix { first_label: String, first: MatrixIdentity, label: String, shard: Shard, matrix: MatrixIdentity },
    Duplicate { shard: Shard, first_label: String, label: String },
    Missing { missing: Vec<Shard>, given: Vec<(Shard, String)> },
    WrongCells { label: String, shard: Shard, why: String },
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::NoShards => write!(f, "no shard summaries to merge"),
            MergeError::NotAShard { label } => {
                write!(f, "{label} is not a shard: it ran a whole matrix (merge takes `--shard K/N` runs)")
            }
            MergeError::AlreadyMerged { label } => write!(f, "{label} is already a merge of shards"),
            MergeError::DifferentShardCount { first_label, first, label, shard } => write!(
                f,
                "{label} is shard {shard} but {first_label} is shard {first}: shards of one matrix share their N"
            ),
            MergeError::DifferentBuild { first_label, first, label, shard, build } => write!(
                f,
                "shard {shard} ({label}) was run by {build}, but {first_label} by {first}: \
                 shards must be run by one build"
            ),
            MergeError::DifferentMatrix { first_label, first, label, shard, matrix } => write!(
                f,
                "shard {shard} ({label}) ran a different matrix ({}, {} cells) from {first_label} ({}, {} cells): \
                 give every shard the same workloads, nemeses, seeds, time limit, scenarios and test arguments",
                matrix.hash, matrix.cells, first.hash, first.cells
            ),
            MergeError::Duplicate { shard, first_label, label } => {
                write!(f, "shard {shard} is given twice: {first_label} and {label}")
            }
            MergeError::Missing { missing, given } => {
                let missing: Vec<String> = missing.iter().map(Shard::to_string).collect();
                let given: Vec<String> = given.iter().map(|(shard, label)| format!("{shard} from {label}")).collect();
                write!(f, "shard {} missing (given: {})", missing.join(", "), given.join(", "))
            }
            MergeError::WrongCells { label, shard, why } => {
                write!(f, "shard {shard} ({label}) does not hold the cells --shard {shard} assigns: {why}")
            }
        }
    }
}

impl std::error::Error for MergeError {}

/// The shards of one matrix as one summary, or why they are not that. Pure.
pub fn merge_summaries(mut shards: Vec<ShardSummary>) -> Result<TortureSummary, MergeError> {
    let mut with_shard = Vec::new();
    for s in &shards {
        match s.summary.shard {
            Some(shard) => with_shard.push(shard),
            None if s.summary.merged_from.is_empty() => return Err(MergeError::NotAShard { label: s.label.clone() }),
            None => return Err(MergeError::AlreadyMerged { label: s.label.clone() }),
        }
    }
    let Some(first) = shards.first() else { return Err(MergeError::NoShards) };
    let first_shard = with_shard[0];
    for (s, &shard) in shards.iter().zip(&with_shard).skip(1) {
        if shard.count != first_shard.count {
            return Err(MergeError::DifferentShardCount {
                first_label: first.label.clone(),
                first: first_shard,
                label: s.label.clone(),
                shard,
            });
        }
        if s.summary.build != first.summary.build {
            return Err(MergeError::DifferentBuild {
                first_label: first.label.clone(),
                first: Box::new(first.summary.build.clone()),
                label: s.label.clone(),
                shard,
                build: Box::new(s.summary.build.clone()),
            });
        }
        if s.summary.matrix != first.summary.matrix {
            return Err(MergeError::DifferentMatrix {
                first_label: first.label.clone(),
                first: first.summary.matrix.clone(),
                label: s.label.clone(),
                shard,
                matrix: s.summary.matrix.clone(),
            });
        }
    }
    shards.sort_by_key(|s| s.summary.shard);
    for pair in shards.windows(2) {
        if pair[0].summary.shard == pair[1].summary.shard {
            return Err(MergeError::Duplicate {
                shard: pair[0].summary.shard.expect("checked above"),
                first_label: pair[0].label.clone(),
                label: pair[1].label.clone(),
            });
        }
    }
    let count = first_shard.count;
    let given: Vec<(Shard, String)> =
        shards.iter().map(|s| (s.summary.shard.expect("checked above"), s.label.clone())).collect();
    let missing: Vec<Shard> =
        (1..=count).map(|index| Shard { index, count }).filter(|k| !given.iter().any(|(g, _)| g == k)).collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing { missing, given });
    }
    let matrix = shards[0].summary.matrix.clone();
    for s in &shards {
        check_cells(s, &matrix)?;
    }

    let mut planned: Vec<_> = shards.iter().flat_map(|s| s.summary.planned.iter().cloned()).collect();
    planned.sort_by_key(|p| p.matrix_index);
    let mut runs: Vec<_> = shards
        .iter()
        .flat_map(|s| {
            s.summary.runs.iter().cloned().map(|mut run| {
                run.store = Some(s.store_link.clone());
                run
            })
        })
        .collect();
    runs.sort_by_key(|r| r.matrix_index);
    let not_run = planned
        .iter()
        .filter(|p| runs.binary_search_by_key(&p.matrix_index, |r| r.matrix_index).is_err())
        .map(|p| p.name.clone())
        .collect();
    Ok(TortureSummary {
        format_version: FORMAT_VERSION,
        build: shards[0].summary.build.clone(),
        matrix,
        shard: None,
        merged_from: shards
            .iter()
            .map(|s| MergedShard { shard: s.summary.shard.expect("checked above"), summary: s.label.clone() })
            .collect(),
        planned,
        runs,
        not_run,
        duration_s: shards.iter().map(|s| s.summary.duration_s).fold(0.0, f64::max),
        first_invalid_s: shards.iter().filter_map(|s| s.summary.first_invalid_s).reduce(f64::min),
    })
}

/// A shard's planned cells are exactly the ones the assignment gives it, and it ran only those,
/// each at most once; so the shards together plan every cell of the matrix exactly once.
fn check_cells(s: &ShardSummary, matrix: &MatrixIdentity) -> Result<(), MergeError> {
    let shard = s.summary.shard.expect("checked by the caller");
    let wrong = |why: String| MergeError::WrongCells { label: s.label.clone(), shard, why };
    let planned: Vec<usize> = s.summary.planned.iter().map(|p| p.matrix_index).collect();
    let assigned = shard.cell_indices(matrix.cells);
    if planned != assigned {
        return Err(wrong(format!("it planned cells {planned:?} of {}, not {assigned:?}", matrix.cells)));
    }
    let mut ran: Vec<usize> = Vec::new();
    for run in &s.summary.runs {
        if !s.summary.planned.iter().any(|p| p.matrix_index == run.matrix_index && p.name == run.name) {
            return Err(wrong(format!("it ran {} (cell {}), which it did not plan", run.name, run.matrix_index)));
        }
        if ran.contains(&run.matrix_index) {
            return Err(wrong(format!("it ran {} (cell {}) twice", run.name, run.matrix_index)));
        }
        ran.push(run.matrix_index);
    }
    Ok(())
}

/// `to` relative to the directory `from`; both absolute and without `.` or `..`. Pure.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

/// A shard's summary directory: DIR itself if it holds torture.json, else the one DIR/torture/*/.
fn find_summary_dir(dir: &Path) -> Result<PathBuf> {
    if dir.join("torture.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    let torture = dir.join("torture");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&torture)
        .with_context(|| format!("{}: no torture.json there nor a torture/ directory", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("torture.json").is_file())
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("{}: no torture/*/torture.json (did this shard run?)", dir.display()),
        _ => bail!(
            "{}: several matrices ran in this store ({}); give the summary directory of the shard's run",
            dir.display(),
            found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

pub fn run(args: &MergeArgs) -> Result<crate::exit::Exit> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let out = args.out.canonicalize()?;
    let mut shards = Vec::new();
    for dir in &args.dirs {
        let summary_dir = find_summary_dir(dir)?.canonicalize()?;
        let summary = summary::read(&summary_dir.join("torture.json"))?;
        // Runs are named relative to their store, <store>/torture/<stamp>/ holds the summary.
        let store = summary_dir.parent().and_then(Path::parent).context("a summary directory has no store")?;
        shards.push(ShardSummary {
            label: dir.display().to_string(),
            store_link: relative_path(&out, store).display().to_string(),
            summary,
        });
    }
    let merged = merge_summaries(shards)?;
    summary::write(&out, &merged)?;
    eprintln!(
        "faultline torture merge: {} shards, {} of {} cells ran: {} valid, {} invalid, {} unknown, {} vacuous, \
         {} harness failures; {} not run\n   summary: {}",
        merged.merged_from.len(),
        merged.runs.len(),
        merged.matrix.cells,
        merged.count(summary::Outcome::Valid),
        merged.count(summary::Outcome::Invalid),
        merged.count(summary::Outcome::Unknown),
        merged.count(summary::Outcome::Vacuous),
        merged.count(summary::Outcome::HarnessFailure),
        merged.not_run.len(),
        out.join("index.html").display()
    );
    Ok(merged.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torture::summary::tests::{result, summary};
    use crate::torture::summary::{Outcome, PlannedCell};

    /// Shard k of a matrix of `cells` cells where every planned cell ran valid, except those in `not_run`.
    fn shard_summary(index: u32, count: u32, cells: usize, not_run: &[usize]) -> ShardSummary {
        let shard = Shard { index, count };
        let indices = shard.cell_indices(cells);
        let runs = indices
            .iter()
            .filter(|i| !not_run.contains(i))
            .map(|&i| result(i, &format!("cell-{i}"), if i == 4 { Outcome::Invalid } else { Outcome::Valid }))
            .collect();
        let mut s = summary(runs);
        s.matrix.cells = cells;
        s.shard = Some(shard);
        s.planned = indices.iter().map(|&i| PlannedCell { matrix_index: i, name: format!("cell-{i}") }).collect();
        s.not_run = not_run.iter().map(|i| format!("cell-{i}")).collect();
        s.first_invalid_s = indices.contains(&4).then_some(2.0 + f64::from(index));
        ShardSummary { label: format!("shard-{index}"), store_link: format!("../shard-{index}"), summary: s }
    }

    #[test]
    fn shards_merge_into_the_whole_matrix_in_matrix_order() {
        let merged =
            merge_summaries(vec![shard_summary(2, 2, 7, &[5]), shard_summary(1, 2, 7, &[])]).expect("they merge");
        let names: Vec<&str> = merged.planned.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cell-0", "cell-1", "cell-2", "cell-3", "cell-4", "cell-5", "cell-6"]);
        let ran: Vec<usize> = merged.runs.iter().map(|r| r.matrix_index).collect();
        assert_eq!(ran, [0, 1, 2, 3, 4, 6]);
        assert_eq!(merged.not_run, ["cell-5"]);
        assert_eq!(merged.runs[1].store.as_deref(), Some("../shard-2"));
        assert_eq!(merged.runs[0].store.as_deref(), Some("../shard-1"));
        assert_eq!(merged.shard, None);
        assert_eq!(merged.merged_from.iter().map(|m| m.shard.index).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(merged.first_invalid_s, Some(3.0));
        assert_eq!(merged.exit_code(), crate::exit::Exit::Invalid);
    }

    #[test]
    fn a_missing_shard_is_named_with_the_shards_given() {
        let error = merge_summaries(vec![shard_summary(1, 3, 7, &[]), shard_summary(3, 3, 7, &[])]).unwrap_err();
        assert!(matches!(&error, MergeError::Missing { missing, .. } if missing == &[Shard { index: 2, count: 3 }]));
        assert_eq!(error.to_string(), "shard 2/3 missing (given: 1/3 from shard-1, 3/3 from shard-3)");
    }

    #[test]
    fn a_shard_of_a_different_matrix_is_named() {
        let mut other = shard_summary(2, 2, 7, &[]);
        other.label = "elsewhere".into();
        other.summary.matrix.hash = "fnv1a64:00000000000000ff".into();
        let error = merge_summaries(vec![shard_summary(1, 2, 7, &[]), other]).unwrap_err();
        assert!(matches!(&error, MergeError::DifferentMatrix { label, .. } if label == "elsewhere"), "{error}");
        assert!(error.to_string().starts_with("shard 2/2 (elsewhere) ran a different matrix"), "{error}");
    }

    #[test]
    fn shards_of_different_builds_counts_or_given_twice_are_refused() {
        let mut other_build = shard_summary(2, 2, 7, &[]);
        other_build.summary.build.git_revision = Some("def".into());
        let error = merge_summaries(vec![shard_summary(1, 2, 7, &[]), other_build]).unwrap_err();
        assert!(matches!(error, MergeError::DifferentBuild { .. }), "{error}");
        assert!(error.to_string().contains("by faultline 0.1.0 at def, but shard-1 by faultline 0.1.0 at abc"));

        let error = merge_summaries(vec![shard_summary(1, 2, 7, &[]), shard_summary(2, 3, 7, &[])]).unwrap_err();
        assert!(matches!(error, MergeError::DifferentShardCount { .. }), "{error}");

        let mut again = shard_summary(1, 2, 7, &[]);
        again.label = "copy".into();
        let error = merge_summaries(vec![shard_summary(1, 2, 7, &[]), shard_summary(2, 2, 7, &[]), again]).unwrap_err();
        assert_eq!(error.to_string(), "shard 1/2 is given twice: shard-1 and copy");

        let mut whole = shard_summary(1, 1, 7, &[]);
        whole.summary.shard = None;
        assert!(matches!(merge_summaries(vec![whole]), Err(MergeError::NotAShard { .. })));
        assert_eq!(merge_summaries(vec![]), Err(MergeError::NoShards));
    }

    #[test]
    fn a_shard_holding_cells_its_assignment_does_not_give_it_is_refused() {
        let mut tampered = shard_summary(2, 2, 7, &[]);
        tampered.summary.planned.remove(0);
        let error = merge_summaries(vec![shard_summary(1, 2, 7, &[]), tampered]).unwrap_err();
        assert!(matches!(error, MergeError::WrongCells { .. }), "{error}");
        let mut twice = shard_summary(2, 2, 7, &[]);
        let again = twice.summary.runs[0].clone();
        twice.summary.runs.push(again);
        let error = merge_summaries(vec![shard_summary(1, 2, 7, &[]), twice]).unwrap_err();
        assert!(error.to_string().ends_with("it ran cell-1 (cell 1) twice"), "{error}");
    }

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        let rel = |a: &str, b: &str| relative_path(Path::new(a), Path::new(b)).display().to_string();
        assert_eq!(rel("/r/merged", "/r/shards/shard-1"), "../shards/shard-1");
        assert_eq!(rel("/r/a/b", "/r"), "../..");
        assert_eq!(rel("/r", "/r/x"), "x");
        assert_eq!(rel("/r", "/r"), ".");
    }
}
