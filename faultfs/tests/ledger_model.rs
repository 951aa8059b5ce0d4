//! The ledger against a reference model that shares no code with it, over seeded random
//! sequences of file system operations.
//!
//! The reference keeps, per object, its volatile and durable content, and the volatile and
//! durable entries of every directory; a power loss keeps the durable ones. The ledger keeps an
//! undo journal over a simulated backing directory (`Disk`), as the FUSE shell does over a real
//! one. After every operation the disk must show the reference's volatile tree; after every
//! `lose-unfsynced` or `torn-write`, its durable tree.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use faultline_faultfs::ledger::{Kind, Ledger, NodeId, Step, TornWrite, ROOT, TRASH_NAME};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
}

/// The simulated backing directory: relative path → entry.
#[derive(Default)]
struct Disk(BTreeMap<String, Entry>);

impl Disk {
    fn under<'a>(&'a self, path: &'a str) -> impl Iterator<Item = String> + 'a {
        let prefix = format!("{path}/");
        self.0.keys().filter(move |k| *k == path || k.starts_with(&prefix)).cloned()
    }

    fn apply(&mut self, step: &Step) {
        match step {
            Step::Move { from, to } => {
                assert!(!self.0.contains_key(to), "move onto existing {to}");
                for key in self.under(from).collect::<Vec<_>>() {
                    let value = self.0.remove(&key).unwrap();
                    self.0.insert(format!("{to}{}", &key[from.len()..]), value);
                }
            }
            Step::RemoveTree { path } => {
                for key in self.under(path).collect::<Vec<_>>() {
                    self.0.remove(&key);
                }
            }
            Step::SetLen { path, len } => self.file(path).resize(*len as usize, 0),
            Step::WriteAt { path, offset, bytes } => write_at(self.file(path), *offset, bytes),
        }
    }

    fn file(&mut self, path: &str) -> &mut Vec<u8> {
        match self.0.get_mut(path) {
            Some(Entry::File(data)) => data,
            other => panic!("{path} is not a file: {other:?}"),
        }
    }

    /// What the mount shows: everything but the trash.
    fn visible(&self) -> BTreeMap<String, Entry> {
        let trash = TRASH_NAME.to_string();
        let mut view = self.0.clone();
        view.retain(|k, _| *k != trash && !k.starts_with(&format!("{trash}/")));
        view
    }
}

fn write_at(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let end = offset as usize + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[offset as usize..end].copy_from_slice(bytes);
}

/// The reference: plain volatile and durable state.
#[derive(Default)]
struct Reference {
    next: u64,
    dirs: BTreeSet<u64>,
    volatile: HashMap<u64, Vec<u8>>,
    durable: HashMap<u64, Vec<u8>>,
    last_write: HashMap<u64, (u64, u64, Vec<u8>)>,
    seq: u64,
    entries: BTreeMap<(u64, String), u64>,
    durable_entries: BTreeMap<(u64, String), u64>,
    epoch: HashMap<u64, u64>,
    syncs: u64,
    /// Directories with a cross-directory rename since their last fsync: their fsync commits all.
    cross: BTreeSet<u64>,
}

const REF_ROOT: u64 = 0;

impl Reference {
    fn new() -> Self {
        let mut r = Reference { next: 1, ..Default::default() };
        r.dirs.insert(REF_ROOT);
        r
    }

    fn view(&self, entries: &BTreeMap<(u64, String), u64>, content: &HashMap<u64, Vec<u8>>) -> BTreeMap<String, Entry> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(REF_ROOT, String::new())];
        while let Some((dir, path)) = stack.pop() {
            for ((_, name), id) in entries.range((dir, String::new())..).take_while(|((d, _), _)| *d == dir) {
                let p = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
                if self.dirs.contains(id) {
                    out.insert(p.clone(), Entry::Dir);
                    stack.push((*id, p));
                } else {
                    out.insert(p, Entry::File(content.get(id).cloned().unwrap_or_default()));
                }
            }
        }
        out
    }

    fn resolve(&self, path: &str) -> Option<u64> {
        let mut at = REF_ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at = *self.entries.get(&(at, part.to_string()))?;
        }
        Some(at)
    }

    /// Forgets objects no entry, volatile or durable, names (with the durable entries of
    /// directories that are gone, until nothing changes).
    fn garbage_collect(&mut self) {
        let named = loop {
            let mut named: BTreeSet<u64> =
                self.entries.values().chain(self.durable_entries.values()).copied().collect();
            named.insert(REF_ROOT);
            let before = self.durable_entries.len();
            self.durable_entries.retain(|(dir, _), _| named.contains(dir));
            if self.durable_entries.len() == before {
                break named;
            }
        };
        self.volatile.retain(|id, _| named.contains(id));
        self.last_write.retain(|id, _| named.contains(id));
    }

    /// Power loss; `keep` is how many bytes of the last un-fsynced write survive (None: none torn).
    fn lose(&mut self, keep: Option<usize>) {
        // An object named durably in several directories stays where the latest fsync put it.
        let mut best: HashMap<u64, (u64, (u64, String))> = HashMap::new();
        for ((dir, name), id) in &self.durable_entries {
            let epoch = self.epoch.get(dir).copied().unwrap_or(0);
            let e = best.entry(*id).or_insert((epoch, (*dir, name.clone())));
            if epoch > e.0 {
                *e = (epoch, (*dir, name.clone()));
            }
        }
        let entries: BTreeMap<(u64, String), u64> = best.into_iter().map(|(id, (_, key))| (key, id)).collect();
        let mut content = self.durable.clone();
        if let (Some(keep), Some((&id, (_, offset, data)))) =
            (keep, self.last_write.iter().max_by_key(|(_, (seq, _, _))| *seq))
        {
            let file = content.entry(id).or_default();
            write_at(file, *offset, &data[..keep]);
        }
        // Only what is reachable from the root survives.
        let mut reachable = BTreeSet::from([REF_ROOT]);
        let mut stack = vec![REF_ROOT];
        while let Some(dir) = stack.pop() {
            for ((d, _), id) in &entries {
                if *d == dir && reachable.insert(*id) && self.dirs.contains(id) {
                    stack.push(*id);
                }
            }
        }
        self.entries = entries.into_iter().filter(|((d, _), _)| reachable.contains(d)).collect();
        self.durable_entries = self.entries.clone();
        content.retain(|id, _| reachable.contains(id));
        self.durable = content.clone();
        self.volatile = content;
        self.last_write.clear();
        self.cross.clear();
    }
}

struct World {
    ledger: Ledger,
    disk: Disk,
    reference: Reference,
    rng: StdRng,
    stats: Stats,
}

/// Guards against a vacuous run: losses must happen and must change something.
#[derive(Default, Debug)]
struct Stats {
    losses: u64,
    losses_that_changed_something: u64,
    torn: u64,
}

impl World {
    /// The ledger's node for a visible path, discovering entries as the shell's lookups do.
    fn node(&mut self, path: &str) -> NodeId {
        let mut at = ROOT;
        let mut walked = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            walked = if walked.is_empty() { part.to_string() } else { format!("{walked}/{part}") };
            at = match self.ledger.lookup(at, part.as_bytes()) {
                Some(id) => id,
                None => {
                    let kind = match self.disk.0.get(&walked).expect("exists on disk") {
                        Entry::Dir => Kind::Dir,
                        Entry::File(_) => Kind::File,
                    };
                    self.ledger.discover(at, part.as_bytes(), kind)
                }
            };
        }
        at
    }

    fn run(&mut self, steps: &[Step]) {
        for step in steps {
            self.disk.apply(step);
        }
    }

    fn paths(&self, dirs: bool) -> Vec<String> {
        let mut v: Vec<String> =
            self.disk.visible().into_iter().filter(|(_, e)| (*e == Entry::Dir) == dirs).map(|(k, _)| k).collect();
        if dirs {
            v.push(String::new());
        }
        v
    }

    fn free_name(&mut self) -> (String, String) {
        let dirs = self.paths(true);
        let parent = dirs[self.rng.gen_range(0..dirs.len())].clone();
        let name = ["a", "b", "c", "d"][self.rng.gen_range(0..4)].to_string();
        (parent, name)
    }

    fn join(parent: &str, name: &str) -> String {
        if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        }
    }

    fn step(&mut self, log: &mut Vec<String>) {
        let files = self.paths(false);
        let dirs = self.paths(true);
        let choice = self.rng.gen_range(0..100);
        match choice {
            0..=24 if !files.is_empty() => {
                let path = files[self.rng.gen_range(0..files.len())].clone();
                let offset = self.rng.gen_range(0..40u64);
                let len = self.rng.gen_range(1..20usize);
                let bytes: Vec<u8> = (0..len).map(|_| self.rng.gen()).collect();
                log.push(format!("write {path} {offset} {len}"));
                let node = self.node(&path);
                let disk = &mut self.disk;
                let current = disk.file(&path).clone();
                let mut read = |o: u64, n: u64| Ok::<_, ()>(current[o as usize..(o + n) as usize].to_vec());
                self.ledger.will_write(node, current.len() as u64, offset, len as u64, &mut read).unwrap();
                write_at(disk.file(&path), offset, &bytes);
                let id = self.reference.resolve(&path).unwrap();
                write_at(self.reference.volatile.entry(id).or_default(), offset, &bytes);
                self.reference.seq += 1;
                self.reference.last_write.insert(id, (self.reference.seq, offset, bytes));
            }
            25..=31 if !files.is_empty() => {
                let path = files[self.rng.gen_range(0..files.len())].clone();
                let new_len = self.rng.gen_range(0..50usize);
                log.push(format!("truncate {path} {new_len}"));
                let node = self.node(&path);
                let current = self.disk.file(&path).clone();
                let mut read = |o: u64, n: u64| Ok::<_, ()>(current[o as usize..(o + n) as usize].to_vec());
                self.ledger.will_truncate(node, current.len() as u64, new_len as u64, &mut read).unwrap();
                self.disk.file(&path).resize(new_len, 0);
                let id = self.reference.resolve(&path).unwrap();
                self.reference.volatile.entry(id).or_default().resize(new_len, 0);
                self.reference.last_write.remove(&id);
            }
            32..=41 if !files.is_empty() => {
                let path = files[self.rng.gen_range(0..files.len())].clone();
                log.push(format!("fsync {path}"));
                let node = self.node(&path);
                self.ledger.file_synced(node);
                let id = self.reference.resolve(&path).unwrap();
                let v = self.reference.volatile.get(&id).cloned().unwrap_or_default();
                self.reference.durable.insert(id, v);
                self.reference.last_write.remove(&id);
            }
            42..=51 => {
                let path = dirs[self.rng.gen_range(0..dirs.len())].clone();
                log.push(format!("fsync-dir {path:?}"));
                let node = self.node(&path);
                let steps = self.ledger.dir_synced(node);
                self.run(&steps);
                let id = self.reference.resolve(&path).unwrap();
                let r = &mut self.reference;
                r.syncs += 1;
                if r.cross.remove(&id) {
                    r.cross.clear();
                    r.durable_entries = r.entries.clone();
                    for dir in r.dirs.clone() {
                        r.epoch.insert(dir, r.syncs);
                    }
                } else {
                    r.durable_entries.retain(|(d, _), _| *d != id);
                    let current: Vec<_> =
                        r.entries.iter().filter(|((d, _), _)| *d == id).map(|(k, v)| (k.clone(), *v)).collect();
                    r.durable_entries.extend(current);
                    r.epoch.insert(id, r.syncs);
                }
                r.garbage_collect();
            }
            52..=63 => {
                let (parent, name) = self.free_name();
                let path = Self::join(&parent, &name);
                if self.disk.0.contains_key(&path) {
                    return;
                }
                let dir = self.rng.gen_bool(0.3);
                log.push(format!("create {path} dir={dir}"));
                let p = self.node(&parent);
                let kind = if dir { Kind::Dir } else { Kind::File };
                self.ledger.created(p, name.as_bytes(), kind);
                self.disk.0.insert(path, if dir { Entry::Dir } else { Entry::File(Vec::new()) });
                let r = &mut self.reference;
                let pid = r.resolve(&parent).unwrap();
                let id = r.next;
                r.next += 1;
                if dir {
                    r.dirs.insert(id);
                }
                r.entries.insert((pid, name), id);
            }
            64..=71 => {
                let all: Vec<String> = self.disk.visible().keys().cloned().collect();
                if all.is_empty() {
                    return;
                }
                let path = all[self.rng.gen_range(0..all.len())].clone();
                if self.disk.0[&path] == Entry::Dir
                    && self.disk.visible().keys().any(|k| k.starts_with(&format!("{path}/")))
                {
                    return; // rmdir of a non-empty directory fails
                }
                log.push(format!("remove {path}"));
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
                let (parent, name) = (parent.to_string(), name.to_string());
                let p = self.node(&parent);
                self.node(&path); // the kernel looks a name up before removing it
                let (_, steps) = self.ledger.removed(p, name.as_bytes()).expect("known");
                self.run(&steps);
                let r = &mut self.reference;
                let pid = r.resolve(&parent).unwrap();
                r.entries.remove(&(pid, name));
                r.garbage_collect();
            }
            72..=87 => {
                let all: Vec<String> = self.disk.visible().keys().cloned().collect();
                if all.is_empty() {
                    return;
                }
                let from = all[self.rng.gen_range(0..all.len())].clone();
                let (new_parent, new_name) = self.free_name();
                let to = Self::join(&new_parent, &new_name);
                if to == from || to.starts_with(&format!("{from}/")) {
                    return; // into itself
                }
                if let Some(target) = self.disk.0.get(&to) {
                    let from_dir = self.disk.0[&from] == Entry::Dir;
                    let target_dir = *target == Entry::Dir;
                    if from_dir != target_dir
                        || (target_dir && self.disk.0.keys().any(|k| k.starts_with(&format!("{to}/"))))
                    {
                        return;
                    }
                }
                log.push(format!("rename {from} {to}"));
                let (parent, name) = from.rsplit_once('/').unwrap_or(("", &from));
                let (parent, name) = (parent.to_string(), name.to_string());
                let p = self.node(&parent);
                self.node(&from);
                let np = self.node(&new_parent);
                // The shell looks the target up before renaming over it.
                if self.disk.0.contains_key(&to) {
                    self.node(&to);
                }
                let steps = self.ledger.renamed(p, name.as_bytes(), np, new_name.as_bytes());
                self.run(&steps);
                let r = &mut self.reference;
                let pid = r.resolve(&parent).unwrap();
                let npid = r.resolve(&new_parent).unwrap();
                let id = r.entries.remove(&(pid, name)).unwrap();
                r.entries.insert((npid, new_name), id);
                if pid != npid {
                    r.cross.insert(pid);
                    r.cross.insert(npid);
                }
                r.garbage_collect();
            }
            88..=99 => {
                let torn = self.rng.gen_bool(0.5);
                let mut torn_write = None;
                let mut keep = None;
                if torn {
                    let reference_last = self.reference.last_write.values().max_by_key(|(seq, _, _)| *seq);
                    let reference_last = reference_last.map(|(_, o, d)| (*o, d.len() as u64));
                    let last = self.ledger.last_unsynced_write();
                    assert_eq!(last.map(|w| (w.offset, w.len)), reference_last, "last write\n{}", log.join("\n"));
                    if let Some(w) = last {
                        let path = self.ledger.path(w.node).unwrap();
                        let data = self.disk.file(&path).clone();
                        let start = (w.offset as usize).min(data.len());
                        let end = ((w.offset + w.len) as usize).min(data.len());
                        let k = self.rng.gen_range(0..(end - start).max(1));
                        let k = k.min(end - start);
                        keep = Some(k);
                        torn_write = Some(TornWrite { write: w, prefix: data[start..start + k].to_vec() });
                    }
                }
                log.push(format!("lose-unfsynced torn={keep:?}"));
                let before = self.disk.visible();
                let (steps, _) = self.ledger.lose_unfsynced(torn_write);
                self.run(&steps);
                self.stats.losses += 1;
                self.stats.losses_that_changed_something += u64::from(before != self.disk.visible());
                self.stats.torn += u64::from(keep.is_some_and(|k| k > 0));
                self.reference.lose(keep);
                let trash: Vec<_> = self.disk.under(TRASH_NAME).filter(|k| k != TRASH_NAME).collect();
                assert!(trash.is_empty(), "trash left after a loss: {trash:?}\n{}", log.join("\n"));
                let want = self.reference.view(&self.reference.entries, &self.reference.durable);
                assert_eq!(self.disk.visible(), want, "after a loss\n{}", log.join("\n"));
                return;
            }
            _ => return,
        }
        let want = self.reference.view(&self.reference.entries, &self.reference.volatile);
        assert_eq!(self.disk.visible(), want, "volatile view\n{}", log.join("\n"));
    }
}

fn run_seed(seed: u64, n_ops: usize) -> Stats {
    let mut world = World {
        ledger: Ledger::new(),
        disk: Disk::default(),
        reference: Reference::new(),
        rng: StdRng::seed_from_u64(seed),
        stats: Stats::default(),
    };
    world.disk.0.insert(TRASH_NAME.to_string(), Entry::Dir);
    // Files that were on disk before the mount are durable, and discovered lazily.
    for (name, bytes) in [("a", b"durable-a".to_vec()), ("b", b"0123456789abcdef".to_vec())] {
        world.disk.0.insert(name.to_string(), Entry::File(bytes.clone()));
        let id = world.reference.next;
        world.reference.next += 1;
        world.reference.entries.insert((REF_ROOT, name.to_string()), id);
        world.reference.durable_entries.insert((REF_ROOT, name.to_string()), id);
        world.reference.volatile.insert(id, bytes.clone());
        world.reference.durable.insert(id, bytes);
    }
    let mut log = vec![format!("seed {seed}")];
    for _ in 0..n_ops {
        world.step(&mut log);
    }
    world.stats
}

#[test]
fn ledger_matches_the_reference_model_on_random_operation_sequences() {
    let n_seeds: u64 = std::env::var("FAULTFS_MODEL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut total = Stats::default();
    for seed in 0..n_seeds {
        let stats = run_seed(seed, 200);
        total.losses += stats.losses;
        total.losses_that_changed_something += stats.losses_that_changed_something;
        total.torn += stats.torn;
    }
    eprintln!("{total:?}");
    assert!(total.losses_that_changed_something * 4 > total.losses, "vacuous: {total:?}");
    assert!(total.torn > n_seeds, "too few torn writes: {total:?}");
}
