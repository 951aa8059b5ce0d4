//! The pure core: what the backing directory holds now (volatile) against what a power loss
//! would leave (durable), kept as an undo journal.
//!
//! The FUSE shell writes every operation through to the backing directory at once, so reads are
//! plain passthrough and the backing directory always shows the volatile state. The [`Ledger`]
//! remembers just enough to turn it back into the durable state:
//!
//! - per file, the length at its last fsync and the original bytes of every range overwritten
//!   or truncated away since (first write wins; appends past the durable length need nothing);
//! - per directory, the durable binding (`Some(node)` or absent) of every name created, removed
//!   or renamed since the directory's last fsync;
//! - objects unlinked or replaced while a durable entry still names them are not deleted but
//!   moved into a hidden trash directory, so that they can come back.
//!
//! [`Ledger::lose_unfsynced`] returns the [`Step`]s, with paths relative to the backing root,
//! that make the backing directory durable again. The ledger does no IO: the shell reads old
//! bytes through a closure and executes steps in order.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// A node of the mounted tree; also its FUSE inode number.
pub type NodeId = u64;
/// The mount's root directory.
pub const ROOT: NodeId = 1;
/// The hidden directory (at [`TRASH_NAME`] in the backing root) where removed objects wait.
pub const TRASH: NodeId = 2;
/// Name of the trash directory in the backing root; hidden from the mount.
pub const TRASH_NAME: &str = ".faultfs-trash";

/// What a node is; only files have data journals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Symlinks, devices, sockets: passed through, their data never journaled.
    Other,
}

/// One thing the shell must do to the backing directory, in order. Paths are relative to the
/// backing root and computed at the point of the sequence where the step runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Move {
        from: String,
        to: String,
    },
    /// Remove a file, or a directory with everything in it.
    RemoveTree {
        path: String,
    },
    SetLen {
        path: String,
        len: u64,
    },
    WriteAt {
        path: String,
        offset: u64,
        bytes: Vec<u8>,
    },
}

/// The last un-fsynced write of the whole file system, for `torn-write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastWrite {
    pub node: NodeId,
    pub offset: u64,
    pub len: u64,
}

/// What survives of the last write when it is torn: the first `prefix.len()` bytes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornWrite {
    pub write: LastWrite,
    pub prefix: Vec<u8>,
}

/// Counts of what a `lose-unfsynced` threw away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LossReport {
    /// Files whose data went back to their last fsync.
    pub files_reverted: u64,
    /// Directory entries (names) put back to their durable binding.
    pub entries_reverted: u64,
    /// Objects that existed only in volatile state and were deleted.
    pub objects_deleted: u64,
    /// Bytes of the torn write that survived, when one was torn.
    pub torn_kept_bytes: Option<u64>,
}

/// A directory's durable binding of each name touched since its last fsync.
type DurableNames = BTreeMap<Vec<u8>, Option<NodeId>>;

#[derive(Clone, Debug)]
struct Node {
    parent: NodeId,
    name: Vec<u8>,
    kind: Kind,
}

#[derive(Clone, Debug, Default)]
struct FileJournal {
    durable_len: u64,
    /// Disjoint ranges of durable content (offset → bytes) changed since the last fsync.
    saved: BTreeMap<u64, Vec<u8>>,
    last_write: Option<(u64, u64, u64)>, // (sequence, offset, len)
}

impl FileJournal {
    fn saved_bytes(&self) -> u64 {
        self.saved.values().map(|b| b.len() as u64).sum()
    }

    /// The parts of `range` (clipped to the durable length) not saved yet.
    fn unsaved(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let end = range.end.min(self.durable_len);
        let mut gaps = Vec::new();
        let mut at = range.start;
        if at >= end {
            return gaps;
        }
        // A saved range that starts before `at` may still cover it.
        let first = self.saved.range(..=at).next_back().map(|(o, _)| *o);
        let starts = first.into_iter().chain(self.saved.range(at + 1..end).map(|(o, _)| *o));
        for start in starts {
            let stop = start + self.saved[&start].len() as u64;
            if stop <= at {
                continue;
            }
            if start > at {
                gaps.push(at..start.min(end));
            }
            at = at.max(stop);
            if at >= end {
                break;
            }
        }
        if at < end {
            gaps.push(at..end);
        }
        gaps
    }
}

/// The pure core; see the module documentation.
#[derive(Clone, Debug)]
pub struct Ledger {
    nodes: HashMap<NodeId, Node>,
    children: HashMap<(NodeId, Vec<u8>), NodeId>,
    next_id: NodeId,
    files: HashMap<NodeId, FileJournal>,
    /// Durable bindings of the names touched since each directory's last fsync.
    dirs: HashMap<NodeId, DurableNames>,
    write_seq: u64,
    /// When each directory was last fsynced (a counter; absent: not since the mount).
    dir_epoch: HashMap<NodeId, u64>,
    sync_counter: u64,
    /// Directories with a rename to or from another directory since their last fsync.
    cross_renamed: std::collections::HashSet<NodeId>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    pub fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node { parent: ROOT, name: Vec::new(), kind: Kind::Dir });
        let trash = Node { parent: ROOT, name: TRASH_NAME.as_bytes().to_vec(), kind: Kind::Dir };
        nodes.insert(TRASH, trash);
        Ledger {
            nodes,
            children: HashMap::new(),
            next_id: TRASH + 1,
            files: HashMap::new(),
            dirs: HashMap::new(),
            write_seq: 0,
            dir_epoch: HashMap::new(),
            sync_counter: 0,
            cross_renamed: std::collections::HashSet::new(),
        }
    }

    pub fn kind(&self, node: NodeId) -> Option<Kind> {
        self.nodes.get(&node).map(|n| n.kind)
    }

    pub fn lookup(&self, parent: NodeId, name: &[u8]) -> Option<NodeId> {
        self.children.get(&(parent, name.to_vec())).copied()
    }

    /// The node's path relative to the backing root ("" for the root).
    pub fn path(&self, node: NodeId) -> Option<String> {
        let mut parts = Vec::new();
        let mut at = node;
        while at != ROOT {
            let n = self.nodes.get(&at)?;
            parts.push(String::from_utf8_lossy(&n.name).into_owned());
            at = n.parent;
            assert!(parts.len() < 4096, "ledger: cycle in the tree at node {node}");
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// Path of `name` inside `parent`.
    pub fn child_path(&self, parent: NodeId, name: &[u8]) -> Option<String> {
        let p = self.path(parent)?;
        let name = String::from_utf8_lossy(name);
        Some(if p.is_empty() { name.into_owned() } else { format!("{p}/{name}") })
    }

    /// Whether `node` lies inside the trash (removed but maybe coming back).
    pub fn in_trash(&self, node: NodeId) -> bool {
        let mut at = node;
        while at != ROOT {
            if at == TRASH {
                return true;
            }
            match self.nodes.get(&at) {
                Some(n) => at = n.parent,
                None => return false,
            }
        }
        false
    }

    /// An entry found in the backing directory that the ledger has not seen: it was there
    /// before the mount or came from outside, so it is durable as it is.
    pub fn discover(&mut self, parent: NodeId, name: &[u8], kind: Kind) -> NodeId {
        if let Some(id) = self.lookup(parent, name) {
            return id;
        }
        self.insert(parent, name, kind)
    }

    fn insert(&mut self, parent: NodeId, name: &[u8], kind: Kind) -> NodeId {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(id, Node { parent, name: name.to_vec(), kind });
        self.children.insert((parent, name.to_vec()), id);
        id
    }

    /// Remembers the durable binding of `parent/name` before its first change since the
    /// directory's last fsync.
    fn touch(&mut self, parent: NodeId, name: &[u8]) {
        let current = self.lookup(parent, name);
        self.dirs.entry(parent).or_default().entry(name.to_vec()).or_insert(current);
    }

    fn detach(&mut self, node: NodeId) {
        let n = self.nodes.get(&node).expect("ledger: detach of an unknown node");
        let removed = self.children.remove(&(n.parent, n.name.clone()));
        assert_eq!(removed, Some(node), "ledger: child index out of step");
    }

    fn attach(&mut self, node: NodeId, parent: NodeId, name: Vec<u8>) {
        let previous = self.children.insert((parent, name.clone()), node);
        assert!(previous.is_none(), "ledger: attach over an existing entry");
        let n = self.nodes.get_mut(&node).expect("ledger: attach of an unknown node");
        n.parent = parent;
        n.name = name;
    }

    fn trash_name(node: NodeId) -> Vec<u8> {
        node.to_string().into_bytes()
    }

    /// A new object made at `parent/name` (which was free); its entry is volatile until the
    /// directory is fsynced, and a new file's durable content is empty.
    pub fn created(&mut self, parent: NodeId, name: &[u8], kind: Kind) -> NodeId {
        assert!(self.lookup(parent, name).is_none(), "ledger: create over an existing entry");
        self.touch(parent, name);
        let id = self.insert(parent, name, kind);
        if kind == Kind::File {
            self.files.insert(id, FileJournal::default());
        }
        id
    }

    /// `parent/name` is removed. Returns the node and what the shell must do in the backing
    /// directory instead of deleting it: move it into the trash, where it waits while a durable
    /// entry still names it (an object that never had one is deleted at once).
    pub fn removed(&mut self, parent: NodeId, name: &[u8]) -> Option<(NodeId, Vec<Step>)> {
        let node = self.lookup(parent, name)?;
        let mut steps = vec![self.move_to_trash(parent, name, node)];
        steps.extend(self.collect_garbage());
        Some((node, steps))
    }

    fn move_to_trash(&mut self, parent: NodeId, name: &[u8], node: NodeId) -> Step {
        let from = self.path(node).expect("node has a path");
        self.touch(parent, name);
        self.detach(node);
        self.attach(node, TRASH, Self::trash_name(node));
        Step::Move { from, to: self.path(node).expect("node has a path") }
    }

    /// `parent/name` is renamed to `new_parent/new_name`. Returns the backing steps in order: a
    /// replaced target goes to the trash first. The shell has checked that the rename is legal.
    pub fn renamed(&mut self, parent: NodeId, name: &[u8], new_parent: NodeId, new_name: &[u8]) -> Vec<Step> {
        let Some(node) = self.lookup(parent, name) else { return Vec::new() };
        let target = self.lookup(new_parent, new_name);
        if target == Some(node) {
            return Vec::new();
        }
        let mut steps = Vec::new();
        if let Some(target) = target {
            steps.push(self.move_to_trash(new_parent, new_name, target));
        }
        let from = self.path(node).expect("node has a path");
        self.touch(parent, name);
        self.touch(new_parent, new_name);
        if parent != new_parent {
            self.cross_renamed.insert(parent);
            self.cross_renamed.insert(new_parent);
        }
        self.detach(node);
        self.attach(node, new_parent, new_name.to_vec());
        steps.push(Step::Move { from, to: self.path(node).expect("node has a path") });
        steps.extend(self.collect_garbage());
        steps
    }

    fn journal(&mut self, node: NodeId, current_len: u64) -> &mut FileJournal {
        self.files.entry(node).or_insert_with(|| FileJournal { durable_len: current_len, ..FileJournal::default() })
    }

    fn save<E>(
        &mut self,
        node: NodeId,
        current_len: u64,
        range: Range<u64>,
        read_old: &mut dyn FnMut(u64, u64) -> Result<Vec<u8>, E>,
    ) -> Result<(), E> {
        let gaps = self.journal(node, current_len).unsaved(range);
        let mut got = Vec::with_capacity(gaps.len());
        for gap in gaps {
            let bytes = read_old(gap.start, gap.end - gap.start)?;
            assert_eq!(bytes.len() as u64, gap.end - gap.start, "ledger: short read of old bytes");
            got.push((gap.start, bytes));
        }
        self.journal(node, current_len).saved.extend(got);
        Ok(())
    }

    /// Whether `node` has changed since its last fsync. Only then may the shell skip reading
    /// the backing length: `current_len` below is used only to start a journal.
    pub fn is_journaled(&self, node: NodeId) -> bool {
        self.files.contains_key(&node)
    }

    /// Before the shell writes `len` bytes at `offset` of file `node` whose backing length is
    /// `current_len`: saves the durable bytes the write will cover, read through `read_old`
    /// (offset, len) from the backing file.
    pub fn will_write<E>(
        &mut self,
        node: NodeId,
        current_len: u64,
        offset: u64,
        len: u64,
        read_old: &mut dyn FnMut(u64, u64) -> Result<Vec<u8>, E>,
    ) -> Result<(), E> {
        self.save(node, current_len, offset..offset + len, read_old)?;
        self.write_seq += 1;
        let seq = self.write_seq;
        self.journal(node, current_len).last_write = Some((seq, offset, len));
        Ok(())
    }

    /// Before the shell sets file `node`'s length from `current_len` to `new_len`.
    pub fn will_truncate<E>(
        &mut self,
        node: NodeId,
        current_len: u64,
        new_len: u64,
        read_old: &mut dyn FnMut(u64, u64) -> Result<Vec<u8>, E>,
    ) -> Result<(), E> {
        self.save(node, current_len, new_len..u64::MAX, read_old)?;
        // What the last write left may be cut; a torn prefix of it no longer means anything.
        self.journal(node, current_len).last_write = None;
        Ok(())
    }

    /// fsync or fdatasync of a file returned: its content and length are durable.
    pub fn file_synced(&mut self, node: NodeId) {
        self.files.remove(&node);
    }

    /// fsync of a directory returned: its entries are durable. Returns what the shell may now
    /// delete for good from the trash (paths), objects no durable entry names any more.
    ///
    /// When the directory saw a rename to or from another directory since its last fsync, every
    /// directory's entries become durable, as a journaling file system commits all metadata
    /// before it in order. Committing one side of a move alone could leave an object durable in
    /// two places, or a directory inside itself.
    pub fn dir_synced(&mut self, dir: NodeId) -> Vec<Step> {
        self.sync_counter += 1;
        let committed: Vec<NodeId> = if self.cross_renamed.contains(&dir) {
            self.cross_renamed.clear();
            self.dirs.drain().map(|(d, _)| d).chain([dir]).collect()
        } else {
            self.dirs.remove(&dir);
            vec![dir]
        };
        for d in committed {
            self.dir_epoch.insert(d, self.sync_counter);
        }
        self.collect_garbage()
    }

    fn collect_garbage(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        loop {
            let referenced: std::collections::HashSet<NodeId> =
                self.dirs.values().flat_map(|m| m.values().flatten().copied()).collect();
            let garbage: Vec<NodeId> = self
                .children
                .iter()
                .filter(|((p, _), id)| *p == TRASH && !referenced.contains(id))
                .map(|(_, id)| *id)
                .collect();
            if garbage.is_empty() {
                return steps;
            }
            for node in garbage {
                steps.push(Step::RemoveTree { path: self.path(node).expect("trash path") });
                self.forget_tree(node);
            }
        }
    }

    /// Forgets `node` and everything under it.
    fn forget_tree(&mut self, node: NodeId) {
        let doomed: Vec<NodeId> =
            self.nodes.keys().copied().filter(|&id| id != ROOT && id != TRASH && self.is_under(id, node)).collect();
        self.detach(node);
        for id in doomed {
            let n = self.nodes.remove(&id).expect("node");
            self.children.remove(&(n.parent, n.name));
            self.files.remove(&id);
            self.dirs.remove(&id);
            self.dir_epoch.remove(&id);
            self.cross_renamed.remove(&id);
        }
    }

    fn is_under(&self, node: NodeId, ancestor: NodeId) -> bool {
        let mut at = node;
        loop {
            if at == ancestor {
                return true;
            }
            if at == ROOT {
                return false;
            }
            at = self.nodes[&at].parent;
        }
    }

    /// Un-fsynced bytes the ledger holds (saved durable content), for its memory bound.
    pub fn saved_bytes(&self) -> u64 {
        self.files.values().map(FileJournal::saved_bytes).sum()
    }

    /// The file with the most saved bytes: the one to write back when the bound is passed.
    pub fn largest_journal(&self) -> Option<NodeId> {
        self.files.iter().max_by_key(|(_, j)| j.saved_bytes()).map(|(id, _)| *id)
    }

    pub fn dirty_files(&self) -> usize {
        self.files.len()
    }

    pub fn dirty_dirs(&self) -> usize {
        self.dirs.len()
    }

    /// The most recent write to a file not fsynced since.
    pub fn last_unsynced_write(&self) -> Option<LastWrite> {
        self.files
            .iter()
            .filter_map(|(id, j)| j.last_write.map(|(seq, offset, len)| (seq, *id, offset, len)))
            .max()
            .map(|(_, node, offset, len)| LastWrite { node, offset, len })
    }

    /// Power loss: returns the steps that turn the backing directory into its durable state,
    /// then the torn write's prefix when one is given, and forgets all volatile state.
    pub fn lose_unfsynced(&mut self, torn: Option<TornWrite>) -> (Vec<Step>, LossReport) {
        let mut steps = Vec::new();
        let mut report = LossReport::default();
        self.cross_renamed.clear();
        let mut dirs: Vec<(NodeId, DurableNames)> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(id, _)| *id);
        // 1. Every touched name gives up what it holds now.
        for (dir, names) in &dirs {
            for name in names.keys() {
                if let Some(node) = self.lookup(*dir, name) {
                    let from = self.path(node).expect("path");
                    self.detach(node);
                    self.attach(node, TRASH, Self::trash_name(node));
                    steps.push(Step::Move { from, to: self.path(node).expect("path") });
                }
            }
        }
        // 2. Every touched name gets its durable binding back, from the trash. An object that
        //    durable entries of several directories name (moved between two directories, one
        //    of them fsynced since) stays where the most recently fsynced directory put it.
        let mut claims: BTreeMap<NodeId, (u64, NodeId, Vec<u8>)> = BTreeMap::new();
        for (dir, names) in &dirs {
            let epoch = self.dir_epoch.get(dir).copied().unwrap_or(0);
            for (name, durable) in names {
                report.entries_reverted += 1;
                let Some(node) = *durable else { continue };
                let claim = (epoch, *dir, name.clone());
                let best = claims.entry(node).or_insert_with(|| claim.clone());
                if claim.0 > best.0 {
                    *best = claim;
                }
            }
        }
        for (node, (epoch, dir, name)) in claims {
            let parent = self.nodes[&node].parent;
            if parent != TRASH {
                // At a name nobody touched since its directory's last fsync: durable there.
                let here = self.dir_epoch.get(&parent).copied().unwrap_or(0);
                assert!(here != epoch, "ledger: object {node} durable in two places at once");
                if here > epoch {
                    continue;
                }
            }
            let from = self.path(node).expect("path");
            self.detach(node);
            self.attach(node, dir, name);
            steps.push(Step::Move { from, to: self.path(node).expect("path") });
        }
        // 3. What is left in the trash never reached a durable entry.
        let leftovers: Vec<NodeId> =
            self.children.iter().filter(|((p, _), _)| *p == TRASH).map(|(_, id)| *id).collect();
        let mut leftovers = leftovers;
        leftovers.sort();
        for node in leftovers {
            report.objects_deleted += 1;
            steps.push(Step::RemoveTree { path: self.path(node).expect("path") });
            self.forget_tree(node);
        }
        // 4. Surviving files go back to their durable content; the torn write comes last.
        let mut files: Vec<(NodeId, FileJournal)> = std::mem::take(&mut self.files).into_iter().collect();
        files.sort_by_key(|(id, _)| *id);
        for (node, journal) in files {
            let Some(path) = self.nodes.get(&node).and_then(|_| self.path(node)) else {
                continue;
            };
            report.files_reverted += 1;
            steps.push(Step::SetLen { path: path.clone(), len: journal.durable_len });
            for (offset, bytes) in journal.saved {
                steps.push(Step::WriteAt { path: path.clone(), offset, bytes });
            }
        }
        if let Some(torn) = torn {
            if let Some(path) = self.nodes.get(&torn.write.node).and_then(|_| self.path(torn.write.node)) {
                report.torn_kept_bytes = Some(torn.prefix.len() as u64);
                steps.push(Step::WriteAt { path, offset: torn.write.offset, bytes: torn.prefix });
            }
        }
        (steps, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_read(_: u64, _: u64) -> Result<Vec<u8>, ()> {
        panic!("nothing should be read")
    }

    #[test]
    fn appends_past_the_durable_length_save_nothing() {
        let mut l = Ledger::new();
        let f = l.discover(ROOT, b"wal", Kind::File);
        l.will_write(f, 10, 10, 5, &mut no_read).unwrap();
        assert_eq!(l.saved_bytes(), 0);
        let (steps, _) = l.lose_unfsynced(None);
        assert_eq!(steps, vec![Step::SetLen { path: "wal".into(), len: 10 }]);
    }

    #[test]
    fn an_overwrite_saves_each_durable_byte_once() {
        let mut l = Ledger::new();
        let f = l.discover(ROOT, b"f", Kind::File);
        let disk = b"0123456789".to_vec();
        let mut read = |o: u64, n: u64| Ok::<_, ()>(disk[o as usize..(o + n) as usize].to_vec());
        l.will_write(f, 10, 2, 3, &mut read).unwrap();
        l.will_write(f, 10, 0, 20, &mut read).unwrap();
        assert_eq!(l.saved_bytes(), 10);
        let (steps, _) = l.lose_unfsynced(None);
        assert_eq!(steps.len(), 4, "{steps:?}");
    }

    #[test]
    fn a_synced_file_has_nothing_to_lose() {
        let mut l = Ledger::new();
        let f = l.discover(ROOT, b"f", Kind::File);
        l.will_write(f, 0, 0, 4, &mut no_read).unwrap();
        l.file_synced(f);
        assert_eq!(l.last_unsynced_write(), None);
        assert_eq!(l.lose_unfsynced(None).0, vec![]);
    }

    #[test]
    fn a_create_without_a_directory_fsync_is_lost() {
        let mut l = Ledger::new();
        let f = l.created(ROOT, b"new", Kind::File);
        l.file_synced(f);
        let (steps, report) = l.lose_unfsynced(None);
        assert_eq!(report.objects_deleted, 1);
        assert_eq!(steps.last(), Some(&Step::RemoveTree { path: format!("{TRASH_NAME}/{f}") }));
        assert_eq!(l.lookup(ROOT, b"new"), None);
    }

    #[test]
    fn an_unlinked_file_waits_in_the_trash_until_the_directory_fsync() {
        let mut l = Ledger::new();
        let f = l.discover(ROOT, b"old", Kind::File);
        let (_, steps) = l.removed(ROOT, b"old").unwrap();
        assert_eq!(steps, vec![Step::Move { from: "old".into(), to: format!("{TRASH_NAME}/{f}") }]);
        assert_eq!(l.dir_synced(ROOT), vec![Step::RemoveTree { path: format!("{TRASH_NAME}/{f}") }]);
    }

    /// Found by the model test (a cycle assertion): B moved out of A, then A moved into B, and
    /// B fsynced alone. Per-directory commits would put B back into A while A stayed in B.
    #[test]
    fn r_cycle_a_directory_never_ends_up_inside_itself() {
        let mut l = Ledger::new();
        let a = l.discover(ROOT, b"a", Kind::Dir);
        let b = l.discover(a, b"b", Kind::Dir);
        l.renamed(a, b"b", ROOT, b"b");
        l.renamed(ROOT, b"a", b, b"a");
        l.dir_synced(b);
        let (steps, _) = l.lose_unfsynced(None);
        assert_eq!(steps, vec![], "the fsync of b committed both renames");
        assert_eq!(l.path(a).as_deref(), Some("b/a"));
    }

    #[test]
    fn a_rename_within_one_directory_commits_only_that_directory() {
        let mut l = Ledger::new();
        let d = l.discover(ROOT, b"d", Kind::Dir);
        let f = l.discover(d, b"tmp", Kind::File);
        let g = l.created(ROOT, b"g", Kind::File);
        l.renamed(d, b"tmp", d, b"final");
        l.dir_synced(d);
        l.lose_unfsynced(None);
        assert_eq!(l.path(f).as_deref(), Some("d/final"));
        assert_eq!(l.path(g), None, "root was never fsynced");
    }

    #[test]
    fn unsaved_ranges_skip_what_is_saved() {
        let mut j = FileJournal { durable_len: 100, ..FileJournal::default() };
        j.saved.insert(10, vec![0; 10]);
        j.saved.insert(30, vec![0; 5]);
        assert_eq!(j.unsaved(0..50), vec![0..10, 20..30, 35..50]);
        assert_eq!(j.unsaved(12..18), vec![]);
        assert_eq!(j.unsaved(15..200), vec![20..30, 35..100]);
        assert_eq!(j.unsaved(120..200), vec![]);
    }
}
