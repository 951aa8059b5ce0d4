//! Tidy checks that keep the code base as ARCHITECTURE.md describes it: every source file opens
//! with a `//!` doc saying what it is for; every path ARCHITECTURE.md names exists; no function
//! grows past the ratchet (`FUNCTION_LINES_LIMIT`, with a list of today's longer functions that
//! may only shrink: a listed function that grows, or an unlisted one past the limit, fails; a
//! listed one now under the limit must leave the list).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The longest a function may be unless it is on the ratchet list.
const FUNCTION_LINES_LIMIT: usize = 120;

/// Functions longer than the limit today, with their length in lines: (file, function, lines).
/// Shrink a function and lower (or remove) its entry; never raise one.
const RATCHET: &[(&str, &str, usize)] = &[
    ("checker/src/check.rs", "explain", 134),
    ("checker/src/check.rs", "run", 177),
    ("checker/src/html.rs", "render", 196),
    ("checker/src/txn/deps.rs", "list_append", 156),
    ("node/src/raft/mod.rs", "step", 144),
    ("src/bench_cmd.rs", "measure", 145),
    ("src/report/html.rs", "index_html", 191),
    ("src/report/html.rs", "timeline_html", 144),
    ("src/test_cmd.rs", "drive", 126),
    ("workloads/src/append_check.rs", "check", 204),
    ("workloads/src/set_full.rs", "check", 172),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Rust source of the workspace's crates: the root crate's src/ and the src/ of every
/// folder with a Cargo.toml (target/ and the examples' generated files are not crates).
fn sources() -> Vec<PathBuf> {
    let crates = std::fs::read_dir(root()).unwrap().filter_map(|e| e.ok()).map(|e| e.path());
    let mut stack: Vec<PathBuf> = std::iter::once(root())
        .chain(crates.filter(|p| p.join("Cargo.toml").exists()))
        .map(|p| p.join("src"))
        .filter(|src| src.is_dir())
        .collect();
    let mut files = Vec::new();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().filter_map(|e| e.ok()).map(|e| e.path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// Every folder of the crates' sources (where a path named in a section may be relative to).
fn folders() -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = sources().iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
    folders.sort();
    folders.dedup();
    folders
}

#[test]
fn every_source_file_opens_with_a_doc_comment() {
    let mut missing = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let first = text.lines().map(str::trim).find(|line| !line.is_empty() && !line.starts_with("#!["));
        if !first.is_some_and(|line| line.starts_with("//!")) {
            missing.push(relative(&file));
        }
    }
    assert!(missing.is_empty(), "source files without a //! doc saying what they are for: {missing:#?}");
}

#[test]
fn every_path_architecture_md_names_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        // A path: has a slash, no spaces, no glob, and names a file or folder of ours.
        let looks_like_path = span.contains('/')
            && !span.contains(' ')
            && !span.contains('*')
            && !span.contains("://")
            && !span.starts_with("--")
            && !span.contains('<')
            && !span.contains("::");
        if !looks_like_path {
            continue;
        }
        // Relative to the root, or to a folder the section is about (`txn/` under the checker).
        let relative_to_a_folder = folders().iter().any(|folder| folder.join(span).exists());
        if !root().join(span).exists() && !relative_to_a_folder {
            missing.push(span.to_string());
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "ARCHITECTURE.md names paths that do not exist: {missing:#?}");
}

/// Lengths of every function and method in a file, by name.
struct Lengths {
    lines: Vec<(String, usize)>,
}

impl Lengths {
    fn record(&mut self, name: String, span: proc_macro2::Span) {
        let lines = span.end().line.saturating_sub(span.start().line) + 1;
        self.lines.push((name, lines));
    }
}

impl<'ast> Visit<'ast> for Lengths {
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.record(item.sig.ident.to_string(), syn::spanned::Spanned::span(item));
        syn::visit::visit_item_fn(self, item);
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        self.record(item.sig.ident.to_string(), syn::spanned::Spanned::span(item));
        syn::visit::visit_impl_item_fn(self, item);
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        self.record(item.sig.ident.to_string(), syn::spanned::Spanned::span(item));
        syn::visit::visit_trait_item_fn(self, item);
    }
}

#[test]
fn no_function_grows_past_the_ratchet() {
    let ratchet: BTreeMap<(&str, &str), usize> = RATCHET.iter().map(|(f, n, l)| ((*f, *n), *l)).collect();
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", relative(&file)));
        let mut lengths = Lengths { lines: Vec::new() };
        lengths.visit_file(&parsed);
        let name = relative(&file);
        for (function, lines) in lengths.lines {
            match ratchet.get(&(name.as_str(), function.as_str())) {
                Some(&allowed) => {
                    seen.push((name.clone(), function.clone()));
                    if lines > allowed {
                        failures.push(format!("{name}: {function} grew to {lines} lines (ratchet: {allowed})"));
                    } else if lines <= FUNCTION_LINES_LIMIT {
                        failures.push(format!(
                            "{name}: {function} is {lines} lines now, within the limit: take it off the ratchet"
                        ));
                    }
                }
                None if lines > FUNCTION_LINES_LIMIT => failures.push(format!(
                    "{name}: {function} is {lines} lines (limit {FUNCTION_LINES_LIMIT}): split it into named steps"
                )),
                None => {}
            }
        }
    }
    for (file, function, _) in RATCHET {
        if !seen.iter().any(|(f, n)| f == file && n == function) {
            failures.push(format!("{file}: {function} is on the ratchet but no longer exists: remove the entry"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
