//! `faultline cleanup`: removes what killed harnesses left behind: processes inside faultline
//! namespaces, the namespaces (and so their veths, bridges and iptables rules), state files.
//! Runs whose harness is still alive are left alone unless `--all` is given.

use crate::exit::Exit;
use std::collections::BTreeSet;

use crate::cluster::state::{self, NAMESPACE_PREFIX};
use crate::netns;

#[derive(clap::Args, Debug, Clone)]
pub struct CleanupArgs {
    /// Also tear down runs whose harness is still running.
    #[arg(long)]
    pub all: bool,
}

/// The run id in a namespace name `fl-<run>-<suffix>`.
fn run_id_of(namespace: &str) -> Option<&str> {
    let rest = namespace.strip_prefix(NAMESPACE_PREFIX)?;
    rest.rsplit_once('-').map(|(run, _)| run)
}

pub fn run(args: CleanupArgs) -> Exit {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("faultline cleanup needs root (it deletes network namespaces)");
        return Exit::HarnessFailure;
    }
    let mut live_runs = BTreeSet::new();
    let mut errors = Vec::new();
    let mut cleaned = 0;
    for (path, loaded) in state::load_all_states() {
        let run_state = match loaded {
            Ok(run_state) => run_state,
            Err(e) => {
                errors.push(format!("{}: {e:#}", path.display()));
                continue;
            }
        };
        if run_state.harness_alive() && !args.all {
            println!("run {} is live (harness pid {}): left alone", run_state.run_id, run_state.harness_pid);
            live_runs.insert(run_state.run_id.clone());
            continue;
        }
        let report = state::cleanup_run(&run_state);
        println!(
            "run {}: killed {} processes, deleted {} namespaces",
            run_state.run_id,
            report.killed_pids.len(),
            report.deleted_namespaces.len()
        );
        errors.extend(report.errors);
        cleaned += 1;
    }
    // Namespaces with our prefix but no state file (e.g. a crash between `ip netns add` and the
    // state save, or a deleted state dir).
    let orphans: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|name| name.starts_with(NAMESPACE_PREFIX))
        .filter(|name| run_id_of(name).is_some_and(|run| !live_runs.contains(run)))
        .collect();
    if !orphans.is_empty() {
        let report = state::remove_namespaces_and_processes(&orphans, &[], &[]);
        println!(
            "orphan namespaces: killed {} processes, deleted {:?}",
            report.killed_pids.len(),
            report.deleted_namespaces
        );
        errors.extend(report.errors);
    }
    if cleaned == 0 && orphans.is_empty() {
        println!("nothing to clean up");
    }
    if errors.is_empty() {
        Exit::Valid
    } else {
        for error in errors {
            eprintln!("faultline cleanup: {error}");
        }
        Exit::HarnessFailure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_come_from_namespace_names() {
        assert_eq!(run_id_of("fl-ab12cd-n3"), Some("ab12cd"));
        assert_eq!(run_id_of("fl-ab12cd-br"), Some("ab12cd"));
        assert_eq!(run_id_of("other"), None);
    }
}
