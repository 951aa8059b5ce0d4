//! Checks of the cluster itself after a run, beside the history: do the replicas agree (the
//! `convergence` check), and did any node die on its own (the `node-crashes` check)?
//!
//! A history only shows what clients saw. Two replicas that applied different entries at the
//! same log index (two leaders in one term, a committed entry overwritten) may never be read by a
//! client before the run ends, yet the state machines have diverged for good; an assertion that
//! stopped a node (say "two leaders in one term") is the system reporting its own bug. Both are
//! findings about the system under test, so both make a run invalid.
//!
//! **Invariant:** a check that could not compare (a node did not answer, the replicas did not
//! reach the same applied index in time, the db has no digest) is `unknown`, never `valid`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use faultline_checker::Verdict;
use faultline_workloads::CheckerReport;
use serde_json::json;

use crate::cluster::{node_name, Cluster, NodeId};
use crate::systems::Db;

/// What one node says about what it applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaState {
    pub applied_index: u64,
    /// A digest of the applied data.
    pub digest: String,
    /// Checksums of the last applied entries, the first of entry `applied_hashes_first`; empty
    /// when the system does not give them.
    pub applied_hashes_first: u64,
    pub applied_hashes: Vec<u32>,
}

/// What one node said, or why it could not say.
pub type Reading = Result<ReplicaState, String>;

/// What one round of readings shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Every node answered, at one applied index, with one digest.
    Converged { applied_index: u64, digest: String },
    /// Two nodes at the same applied index hold different data, or applied different entries at
    /// one index: that never heals.
    Diverged { applied_index: u64, digests: BTreeMap<NodeId, String> },
    /// Not comparable yet (different indexes, or a node did not answer).
    NotYet,
}

/// The first index at which two nodes applied different entries, with each node's checksum.
fn first_different_entry(readings: &BTreeMap<NodeId, Reading>) -> Option<(u64, BTreeMap<NodeId, String>)> {
    let states: Vec<(NodeId, &ReplicaState)> =
        readings.iter().filter_map(|(node, r)| r.as_ref().ok().map(|s| (*node, s))).collect();
    let entry = |state: &ReplicaState, index: u64| -> Option<u32> {
        let offset = index.checked_sub(state.applied_hashes_first)?;
        state.applied_hashes.get(usize::try_from(offset).ok()?).copied()
    };
    let first = states.iter().map(|(_, s)| s.applied_hashes_first).min()?;
    let last = states.iter().map(|(_, s)| s.applied_hashes_first + s.applied_hashes.len() as u64).max()?;
    for index in first..last {
        let at: BTreeMap<NodeId, u32> = states.iter().filter_map(|(n, s)| entry(s, index).map(|h| (*n, h))).collect();
        let mut values = at.values();
        if let Some(v) = values.next() {
            if values.any(|other| other != v) {
                return Some((index, at.into_iter().map(|(n, h)| (n, format!("entry {h:08x}"))).collect()));
            }
        }
    }
    None
}

/// Judges one round. Pure.
pub fn judge(readings: &BTreeMap<NodeId, Reading>) -> Judgement {
    if let Some((applied_index, digests)) = first_different_entry(readings) {
        return Judgement::Diverged { applied_index, digests };
    }
    let mut by_index: BTreeMap<u64, BTreeMap<NodeId, String>> = BTreeMap::new();
    for (node, reading) in readings {
        if let Ok(state) = reading {
            by_index.entry(state.applied_index).or_default().insert(*node, state.digest.clone());
        }
    }
    for (index, digests) in &by_index {
        let first = digests.values().next().expect("a group has a member");
        if digests.values().any(|d| d != first) {
            return Judgement::Diverged { applied_index: *index, digests: digests.clone() };
        }
    }
    let all_answered = readings.values().all(|r| r.is_ok());
    match (all_answered, by_index.len()) {
        (true, 1) => {
            let (index, digests) = by_index.into_iter().next().expect("one group");
            let digest = digests.into_values().next().expect("a group has a member");
            Judgement::Converged { applied_index: index, digest }
        }
        _ => Judgement::NotYet,
    }
}

/// How often the replicas are asked while they catch up.
const POLL_PERIOD: Duration = Duration::from_millis(200);

/// Asks every node for its digest until they agree, diverge, or `timeout` passes. Must run on a
/// thread inside the client namespace. None when the db cannot give digests.
pub fn check_convergence(db: &dyn Db, cluster: &Cluster, timeout: Duration) -> Option<CheckerReport> {
    let digests = db.digests()?;
    let nodes = cluster.node_ids();
    let deadline = Instant::now() + timeout;
    let started = Instant::now();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut readings = BTreeMap::new();
        for node in &nodes {
            let reading = digests.state_digest(cluster, *node).map_err(|e| format!("{e:#}"));
            readings.insert(*node, reading);
        }
        let waited_ms = started.elapsed().as_millis() as u64;
        match judge(&readings) {
            Judgement::Converged { applied_index, digest } => {
                return Some(CheckerReport {
                    checker: "convergence".to_string(),
                    verdict: Verdict::Valid,
                    summary: format!(
                        "all {} replicas hold the same data at applied index {applied_index}",
                        nodes.len()
                    ),
                    details: json!({"applied_index": applied_index, "digest": digest, "rounds": rounds,
                                    "waited_ms": waited_ms}),
                });
            }
            Judgement::Diverged { applied_index, digests } => {
                let named: BTreeMap<String, String> = digests.into_iter().map(|(n, d)| (node_name(n), d)).collect();
                let shown: Vec<String> = named.iter().map(|(n, d)| format!("{n} {d}")).collect();
                return Some(CheckerReport {
                    checker: "convergence".to_string(),
                    verdict: Verdict::Invalid,
                    summary: format!(
                        "replicas diverged: different data or a different entry at applied index {applied_index} ({})",
                        shown.join(", ")
                    ),
                    details: json!({"applied_index": applied_index, "digests": named, "rounds": rounds,
                                    "waited_ms": waited_ms}),
                });
            }
            Judgement::NotYet if Instant::now() >= deadline => {
                let shown: Vec<String> = readings
                    .iter()
                    .map(|(n, r)| match r {
                        Ok(state) => format!("{} at {}", node_name(*n), state.applied_index),
                        Err(e) => format!("{}: {e}", node_name(*n)),
                    })
                    .collect();
                return Some(CheckerReport {
                    checker: "convergence".to_string(),
                    verdict: Verdict::Unknown,
                    summary: format!(
                        "the replicas did not reach one applied index within {} s: {}",
                        timeout.as_secs(),
                        shown.join(", ")
                    ),
                    details: json!({"last_round": shown, "rounds": rounds, "waited_ms": waited_ms}),
                });
            }
            Judgement::NotYet => {
                std::thread::sleep(POLL_PERIOD.min(deadline.saturating_duration_since(Instant::now())))
            }
        }
    }
}

/// The `node-crashes` check: every exit the nemesis did not cause is a finding, with the panic
/// message from the node's log when there is one.
pub fn crash_report(unexpected_exits: &[String], panics: &[(NodeId, String)]) -> CheckerReport {
    if unexpected_exits.is_empty() {
        return CheckerReport {
            checker: "node-crashes".to_string(),
            verdict: Verdict::Valid,
            summary: "no node exited on its own".to_string(),
            details: json!({"exits": []}),
        };
    }
    let panic_lines: Vec<String> = panics.iter().map(|(n, line)| format!("{}: {line}", node_name(*n))).collect();
    let mut summary = format!("{} unexpected node exit(s): {}", unexpected_exits.len(), unexpected_exits.join(", "));
    if let Some(first) = panic_lines.first() {
        summary.push_str(&format!("; {first}"));
    }
    CheckerReport {
        checker: "node-crashes".to_string(),
        verdict: Verdict::Invalid,
        summary,
        details: json!({"exits": unexpected_exits, "panics": panic_lines}),
    }
}

/// The first panic message in each log: Rust prints `thread '...' panicked at FILE:LINE:` and
/// the message on the next line (older versions put both on one line).
pub fn panics_in_logs(logs: &[(NodeId, PathBuf)]) -> Vec<(NodeId, String)> {
    let mut found = Vec::new();
    for (node, path) in logs {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        if let Some(at) = lines.iter().position(|l| l.contains("panicked at")) {
            let mut message = lines[at].trim().to_string();
            if message.ends_with(':') {
                if let Some(next) = lines.get(at + 1) {
                    message = format!("{message} {}", next.trim());
                }
            }
            found.push((*node, message));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (node, Ok((applied index, digest)) or Err(why)).
    type Said<'a> = (NodeId, Result<(u64, &'a str), &'a str>);

    fn readings(items: &[Said]) -> BTreeMap<NodeId, Reading> {
        items
            .iter()
            .map(|(node, r)| {
                let reading = r
                    .map(|(applied_index, digest)| ReplicaState {
                        applied_index,
                        digest: digest.to_string(),
                        ..ReplicaState::default()
                    })
                    .map_err(|e| e.to_string());
                (*node, reading)
            })
            .collect()
    }

    fn with_entries(applied_index: u64, first: u64, hashes: &[u32]) -> Reading {
        Ok(ReplicaState {
            applied_index,
            digest: format!("d{applied_index}"),
            applied_hashes_first: first,
            applied_hashes: hashes.to_vec(),
        })
    }

    #[test]
    fn one_index_and_one_digest_is_converged() {
        let r = readings(&[(1, Ok((7, "ab"))), (2, Ok((7, "ab"))), (3, Ok((7, "ab")))]);
        assert_eq!(judge(&r), Judgement::Converged { applied_index: 7, digest: "ab".into() });
    }

    #[test]
    fn a_different_entry_is_divergence_even_when_the_replicas_are_at_different_indexes() {
        let mut r = BTreeMap::new();
        r.insert(1, with_entries(5, 1, &[10, 11, 12, 13, 14]));
        r.insert(2, with_entries(3, 1, &[10, 11, 99]));
        match judge(&r) {
            Judgement::Diverged { applied_index, digests } => {
                assert_eq!(applied_index, 3);
                assert_eq!(digests.len(), 2);
            }
            other => panic!("expected divergence, got {other:?}"),
        }
        // The same prefix, one replica behind: not yet comparable, not divergence. Checksums
        // kept from different first indexes (a snapshot) line up by index.
        r.insert(2, with_entries(4, 2, &[11, 12, 13]));
        assert_eq!(judge(&r), Judgement::NotYet);
    }

    #[test]
    fn different_data_at_one_index_is_divergence_even_while_others_lag() {
        let r = readings(&[(1, Ok((7, "ab"))), (2, Ok((7, "cd"))), (3, Ok((5, "ef")))]);
        match judge(&r) {
            Judgement::Diverged { applied_index, digests } => {
                assert_eq!(applied_index, 7);
                assert_eq!(digests.len(), 2);
            }
            other => panic!("expected divergence, got {other:?}"),
        }
    }

    #[test]
    fn lagging_or_silent_replicas_are_not_yet_comparable() {
        let lagging = readings(&[(1, Ok((7, "ab"))), (2, Ok((6, "cd")))]);
        assert_eq!(judge(&lagging), Judgement::NotYet);
        let silent = readings(&[(1, Ok((7, "ab"))), (2, Err("refused"))]);
        assert_eq!(judge(&silent), Judgement::NotYet);
    }

    #[test]
    fn an_exit_is_a_finding_and_carries_its_panic() {
        assert_eq!(crash_report(&[], &[]).verdict, Verdict::Valid);
        let report = crash_report(
            &["n2: exit status: 101".into()],
            &[(2, "thread 'main' panicked at src/raft/mod.rs:9: election safety".into())],
        );
        assert_eq!(report.verdict, Verdict::Invalid);
        assert!(report.summary.contains("election safety"), "{}", report.summary);
    }

    #[test]
    fn the_panic_message_is_read_from_the_line_after_the_location() {
        let dir = std::env::temp_dir().join(format!("faultline-panic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("n3.log");
        std::fs::write(&log, "starting\nthread 'main' panicked at node/src/raft/mod.rs:780:9:\nelection safety: two leaders (1 and 3) in term 7\nnote: ...\n").unwrap();
        let found = panics_in_logs(&[(3, log), (4, dir.join("missing.log"))]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].1.ends_with("election safety: two leaders (1 and 3) in term 7"), "{:?}", found);
    }
}
