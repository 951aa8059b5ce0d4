//! Planted bugs, off unless asked for, so the harness can prove it catches each.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One classic Raft bug that `--bug NAME` plants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    StaleRead,
    FollowerStaleRead,
    AckBeforeCommit,
    NoVotePersist,
    CommitOldTerm,
    NoDedup,
    NoFsync,
    LeaseTrustsClock,
}

impl Bug {
    pub const ALL: [Bug; 8] = [
        Bug::StaleRead,
        Bug::FollowerStaleRead,
        Bug::AckBeforeCommit,
        Bug::NoVotePersist,
        Bug::CommitOldTerm,
        Bug::NoDedup,
        Bug::NoFsync,
        Bug::LeaseTrustsClock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::StaleRead => "stale-read",
            Bug::FollowerStaleRead => "follower-stale-read",
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::NoVotePersist => "no-vote-persist",
            Bug::CommitOldTerm => "commit-old-term",
            Bug::NoDedup => "no-dedup",
            Bug::NoFsync => "no-fsync",
            Bug::LeaseTrustsClock => "lease-trusts-clock",
        }
    }

    /// What the bug does and how it shows in a history.
    pub fn description(self) -> &'static str {
        match self {
            Bug::StaleRead => {
                "the leader answers reads from its local state without a ReadIndex quorum round, and does not \
                 step down when cut off (CheckQuorum off); a deposed leader behind a partition serves stale \
                 values (invalid read in a linearizability check)"
            }
            Bug::FollowerStaleRead => {
                "followers answer reads from their local state without asking the leader; \
                 a lagging or partitioned follower returns stale values"
            }
            Bug::AckBeforeCommit => {
                "the leader acknowledges writes, deletes and appends once they are in its own log, before commit; \
                 if it loses leadership the acknowledged write vanishes (lost write)"
            }
            Bug::NoVotePersist => {
                "the vote is kept only in memory; after a crash a node can vote twice in one term, \
                 so two leaders can be elected in the same term (election safety, then divergent state)"
            }
            Bug::CommitOldTerm => {
                "the leader commits entries of earlier terms by counting replicas and skips the no-op at the start \
                 of its term (Raft Figure 8); a committed entry can later be overwritten (lost write)"
            }
            Bug::NoDedup => {
                "client sessions are ignored, so a retried write or cas applies twice; \
                 a retried cas then reports cas-mismatch for a change it made (fail that happened)"
            }
            Bug::NoFsync => {
                "the write-ahead log and snapshots are written but never fsynced, yet votes and entries are \
                 acknowledged as if durable; a power loss (the lose-unfsynced disk fault, or a crash in the \
                 simulation) loses acknowledged entries and votes (lost write, two leaders in a term)"
            }
            Bug::LeaseTrustsClock => {
                "the node counts its Raft ticks by the wall clock instead of the monotonic one, so a clock \
                 stepped back freezes its timers and, with --lease-reads, stretches a leader's lease; a leader \
                 cut off while its clock is set back goes on serving lease reads after another was elected \
                 (stale read; found by clock-strobe with --lease-reads and a partition)"
            }
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown bug {0:?}; --list-bugs shows the known ones")]
pub struct UnknownBug(pub String);

impl FromStr for Bug {
    type Err = UnknownBug;
    fn from_str(s: &str) -> Result<Bug, UnknownBug> {
        Bug::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| UnknownBug(s.to_string()))
    }
}

/// The set of planted bugs of one node; empty in production.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bugs(BTreeSet<Bug>);

impl Bugs {
    pub fn none() -> Bugs {
        Bugs::default()
    }
    pub fn one(bug: Bug) -> Bugs {
        Bugs(BTreeSet::from([bug]))
    }
    pub fn from_list(bugs: impl IntoIterator<Item = Bug>) -> Bugs {
        Bugs(bugs.into_iter().collect())
    }
    pub fn has(&self, bug: Bug) -> bool {
        self.0.contains(&bug)
    }
    pub fn iter(&self) -> impl Iterator<Item = Bug> + '_ {
        self.0.iter().copied()
    }
}
