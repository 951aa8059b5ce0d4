//! The in-memory view of the replicated log, with the bookkeeping of what the
//! shell has persisted and applied.

use super::types::{Entry, Snapshot};

/// Invariants: `entries[k].index == snapshot_index + 1 + k`;
/// `snapshot_index <= applied <= commit`; `commit` never goes back.
#[derive(Debug)]
pub struct RaftLog {
    snapshot_index: u64,
    snapshot_term: u64,
    entries: Vec<Entry>,
    commit: u64,
    /// Highest index handed to the shell to apply.
    applied: u64,
    /// Highest index the shell reported durable.
    persisted: u64,
    /// First index not yet handed to the shell to persist.
    unstable_from: u64,
    /// A snapshot received from the leader that the shell must install.
    pending_snapshot: Option<Snapshot>,
}

impl RaftLog {
    pub fn restore(snapshot_index: u64, snapshot_term: u64, entries: Vec<Entry>, commit: u64) -> RaftLog {
        for (k, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, snapshot_index + 1 + k as u64, "stored log is not contiguous");
        }
        let last = snapshot_index + entries.len() as u64;
        RaftLog {
            snapshot_index,
            snapshot_term,
            entries,
            commit: commit.clamp(snapshot_index, last),
            applied: snapshot_index,
            persisted: last,
            unstable_from: last + 1,
            pending_snapshot: None,
        }
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    pub fn commit(&self) -> u64 {
        self.commit
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn persisted(&self) -> u64 {
        self.persisted
    }

    /// The term of the entry at `index`, if the log still knows it.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    pub fn entries_from(&self, index: u64) -> &[Entry] {
        let start = index.saturating_sub(self.snapshot_index + 1) as usize;
        &self.entries[start.min(self.entries.len())..]
    }

    /// Up to `max` entries starting at `from`.
    pub fn slice(&self, from: u64, max: usize) -> Vec<Entry> {
        assert!(from > self.snapshot_index);
        let tail = self.entries_from(from);
        tail[..tail.len().min(max)].to_vec()
    }

    /// Raft §5.4.1: a candidate's log is at least as up to date as ours if its last
    /// term is higher, or equal with an index at least as high.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    pub fn append(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1);
        assert!(entry.term >= self.last_term(), "terms in the log never decrease");
        self.entries.push(entry);
    }

    /// Appends the entries of an AppendEntries whose previous entry matched,
    /// truncating only at the first conflicting entry (Raft §5.3), so that a
    /// stale or reordered message never shortens the log. Returns the index from
    /// which entries were replaced or added, if any.
    pub fn append_after_match(&mut self, entries: &[Entry]) -> Option<u64> {
        let conflict = entries.iter().find(|e| self.term(e.index) != Some(e.term));
        let first_conflict = conflict?;
        let at = first_conflict.index;
        assert!(
            at > self.commit,
            "conflict at {at} at or below commit {}: committed entries never change",
            self.commit
        );
        if at <= self.last_index() {
            self.entries.truncate((at - self.snapshot_index - 1) as usize);
            self.persisted = self.persisted.min(at - 1);
            self.unstable_from = self.unstable_from.min(at);
        }
        for entry in entries.iter().filter(|e| e.index >= at) {
            self.append(entry.clone());
        }
        Some(at)
    }

    /// Hints for fast backtracking when the entry at `index` did not match.
    pub fn conflict_hint(&self, index: u64) -> (Option<u64>, u64) {
        if index > self.last_index() {
            return (None, self.last_index() + 1);
        }
        let Some(term) = self.term(index) else {
            // Compacted: everything up to the snapshot matches, ask for what follows.
            return (None, self.snapshot_index + 1);
        };
        let mut first = index;
        while first > self.snapshot_index + 1 && self.term(first - 1) == Some(term) {
            first -= 1;
        }
        (Some(term), first)
    }

    /// The last index at or below `at_most` whose term is `term`, if any.
    pub fn last_index_of_term(&self, term: u64, at_most: u64) -> Option<u64> {
        let mut index = at_most.min(self.last_index());
        while index > self.snapshot_index {
            let t = self.term(index)?;
            if t == term {
                return Some(index);
            }
            if t < term {
                return None;
            }
            index -= 1;
        }
        None
    }

    pub fn commit_to(&mut self, index: u64) {
        if index <= self.commit {
            return;
        }
        assert!(index <= self.last_index(), "commit {index} beyond last index {}", self.last_index());
        self.commit = index;
    }

    pub fn mark_persisted(&mut self, index: u64, term: u64) -> bool {
        if index > self.persisted && self.term(index) == Some(term) && index < self.unstable_from {
            self.persisted = index;
            return true;
        }
        false
    }

    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let out = self.entries_from(self.unstable_from).to_vec();
        self.unstable_from = self.last_index() + 1;
        out
    }

    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    pub fn take_committed(&mut self) -> Vec<Entry> {
        if self.applied >= self.commit {
            return Vec::new();
        }
        let out: Vec<Entry> = self.entries_from(self.applied + 1)[..(self.commit - self.applied) as usize].to_vec();
        self.applied = self.commit;
        out
    }

    pub fn has_committed(&self) -> bool {
        self.applied < self.commit
    }

    /// Drops entries up to `index`, which the state machine has snapshotted.
    pub fn compact(&mut self, index: u64) {
        if index <= self.snapshot_index {
            return;
        }
        assert!(index <= self.applied, "compacting unapplied entries");
        let term = self.term(index).expect("compact index in log");
        self.entries.drain(..(index - self.snapshot_index) as usize);
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// Replaces the whole log with a snapshot from the leader (Raft §7). The
    /// caller has checked that the log does not already hold the snapshot's last entry.
    pub fn restore_snapshot(&mut self, snapshot: Snapshot) {
        assert!(snapshot.index > self.commit, "snapshot {} at or below commit {}", snapshot.index, self.commit);
        self.entries.clear();
        self.snapshot_index = snapshot.index;
        self.snapshot_term = snapshot.term;
        self.commit = snapshot.index;
        self.applied = snapshot.index;
        self.persisted = snapshot.index;
        self.unstable_from = snapshot.index + 1;
        self.pending_snapshot = Some(snapshot);
    }

    pub fn take_pending_snapshot(&mut self) -> Option<Snapshot> {
        self.pending_snapshot.take()
    }

    pub fn has_pending_snapshot(&self) -> bool {
        self.pending_snapshot.is_some()
    }
}
