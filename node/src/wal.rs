//! The write-ahead log and the snapshot file in a node's data directory.
//!
//! `wal.log` is a sequence of records, each `[len: u32 BE][crc32: u32 BE][payload]`,
//! where the payload is a bincode [`WalRecord`]. A batch of records (one Ready)
//! is written and then made durable with one fsync (group commit).
//!
//! On open, a torn or corrupt record at the *tail* (nothing valid after it) is
//! cut off and never applied: it is a write that was not yet acknowledged. A
//! corrupt record followed by valid ones means the disk lost acknowledged data;
//! that is reported as [`WalError::CorruptMiddle`] and the node refuses to start.
//!
//! `snapshot` holds the latest snapshot in the same framing, replaced atomically
//! (write a temporary file, fsync, rename, fsync the directory); then `wal.log` is
//! rewritten the same way to start after it. A crash between the two renames leaves
//! the new snapshot beside the old log: on open, the log's entries after the
//! snapshot's index are kept only if its entry at that index has the snapshot's
//! term (Raft §7), since an installed snapshot may replace a divergent log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::raft::{Entry, HardState, Snapshot};

/// Records larger than this are taken as garbage in a length prefix.
pub const MAX_RECORD_BYTES: u32 = 256 << 20;

const HEADER_BYTES: usize = 8;

#[derive(Debug, Serialize, Deserialize)]
pub enum WalRecord {
    HardState(HardState),
    /// Entries from `entries[0].index` on; any stored entry at or after that index is replaced.
    Entries(Vec<Entry>),
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A record in the middle of the log is damaged: acknowledged data is lost.
    #[error("{path}: corrupt record at byte {offset} followed by valid records: the log lost acknowledged data; refusing to start")]
    CorruptMiddle { path: PathBuf, offset: u64 },
    #[error("{path}: the snapshot file is corrupt ({why}); refusing to start")]
    CorruptSnapshot { path: PathBuf, why: String },
    #[error("{path}: record at byte {offset} does not fit the log ({why})")]
    Inconsistent { path: PathBuf, offset: u64, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

/// What was found on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    /// Bytes cut from a torn or corrupt tail (0 for a clean log).
    pub torn_tail_bytes: u64,
}

/// The open write-ahead log.
pub struct Wal {
    dir: PathBuf,
    file: File,
    /// Planted-bug and benchmark switch: skip fsync (never in production).
    pub fsync: bool,
    pub bytes_written: u64,
    pub syncs: u64,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Parses one frame at `offset`: `Ok(Some((payload, next_offset)))`, `Ok(None)` at the end,
/// `Err(())` when the frame is torn or fails its checksum.
fn parse_frame(data: &[u8], offset: usize) -> Result<Option<(&[u8], usize)>, ()> {
    if offset == data.len() {
        return Ok(None);
    }
    if data.len() - offset < HEADER_BYTES {
        return Err(());
    }
    let len = u32::from_be_bytes(data[offset..offset + 4].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(data[offset + 4..offset + 8].try_into().expect("4 bytes"));
    // We never write empty records, so a zero length is a zero-filled tail, not a record.
    if len == 0 || len > MAX_RECORD_BYTES || data.len() - offset - HEADER_BYTES < len as usize {
        return Err(());
    }
    let payload = &data[offset + HEADER_BYTES..offset + HEADER_BYTES + len as usize];
    if crc32fast::hash(payload) != crc {
        return Err(());
    }
    Ok(Some((payload, offset + HEADER_BYTES + len as usize)))
}

/// Whether any valid frame starts anywhere after `from`: if so, a bad frame
/// before it is damage in the middle, not a torn tail.
fn valid_frame_after(data: &[u8], from: usize) -> bool {
    (from + 1..data.len().saturating_sub(HEADER_BYTES - 1)).any(|at| matches!(parse_frame(data, at), Ok(Some((p, _))) if !p.is_empty() && bincode::deserialize::<WalRecord>(p).is_ok()))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

impl Wal {
    fn wal_path(dir: &Path) -> PathBuf {
        dir.join("wal.log")
    }

    fn snapshot_path(dir: &Path) -> PathBuf {
        dir.join("snapshot")
    }

    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> Result<(Wal, Recovered), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut recovered = Recovered::default();
        let snapshot_path = Self::snapshot_path(dir);
        if snapshot_path.exists() {
            let data = fs::read(&snapshot_path).map_err(io_err(&snapshot_path))?;
            let bad = |why: &str| WalError::CorruptSnapshot { path: snapshot_path.clone(), why: why.to_string() };
            let (payload, end) =
                parse_frame(&data, 0).map_err(|_| bad("bad checksum or torn"))?.ok_or_else(|| bad("empty"))?;
            if end != data.len() {
                return Err(bad("trailing bytes"));
            }
            recovered.snapshot = Some(bincode::deserialize(payload).map_err(|e| bad(&e.to_string()))?);
        }
        let path = Self::wal_path(dir);
        let mut data = Vec::new();
        if path.exists() {
            File::open(&path).and_then(|mut f| f.read_to_end(&mut data)).map_err(io_err(&path))?;
        }
        let base = recovered.snapshot.as_ref().map_or(0, |s| s.index);
        // The term of the log's entry at the snapshot's index, if the log holds one:
        // only after a crash between save_snapshot's two renames.
        let mut term_at_base: Option<u64> = None;
        let mut offset = 0usize;
        loop {
            match parse_frame(&data, offset) {
                Ok(None) => break,
                Ok(Some((payload, next))) => {
                    let record: WalRecord = match bincode::deserialize(payload) {
                        Ok(r) => r,
                        Err(e) => {
                            return Err(WalError::Inconsistent {
                                path,
                                offset: offset as u64,
                                why: format!("undecodable record with a valid checksum: {e}"),
                            });
                        }
                    };
                    Self::replay(&mut recovered, base, &mut term_at_base, record)
                        .map_err(|why| WalError::Inconsistent { path: path.clone(), offset: offset as u64, why })?;
                    offset = next;
                }
                Err(()) => {
                    if valid_frame_after(&data, offset) {
                        return Err(WalError::CorruptMiddle { path, offset: offset as u64 });
                    }
                    recovered.torn_tail_bytes = (data.len() - offset) as u64;
                    break;
                }
            }
        }
        if let (Some(snapshot), Some(term)) = (&recovered.snapshot, term_at_base) {
            if term != snapshot.term {
                // Raft §7: the log does not hold the snapshot's last entry, so none of
                // what follows in it belongs after the snapshot.
                recovered.entries.clear();
            }
        }
        let created = !path.exists();
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        if created {
            // The new file's name must be durable before anything written to it is.
            sync_dir(dir)?;
        }
        if recovered.torn_tail_bytes > 0 {
            file.set_len(offset as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        let commit_cap = recovered.entries.last().map_or(base, |e| e.index);
        recovered.hard_state.commit = recovered.hard_state.commit.min(commit_cap);
        Ok((Wal { dir: dir.to_path_buf(), file, fsync: true, bytes_written: 0, syncs: 0 }, recovered))
    }

    fn replay(
        recovered: &mut Recovered,
        base: u64,
        term_at_base: &mut Option<u64>,
        record: WalRecord,
    ) -> Result<(), String> {
        match record {
            WalRecord::HardState(hs) => recovered.hard_state = hs,
            WalRecord::Entries(entries) => {
                let Some(first) = entries.first() else {
                    return Ok(());
                };
                if base > 0 && first.index <= base {
                    // This record rewrites the log from at or below the snapshot's index.
                    *term_at_base = entries.get((base - first.index) as usize).map(|e| e.term);
                }
                // Stored entries always start right after the snapshot; older ones are dropped.
                let keep_from = base + 1;
                let stored_next = keep_from + recovered.entries.len() as u64;
                if first.index > stored_next {
                    return Err(format!("entries start at {} but the log ends at {}", first.index, stored_next - 1));
                }
                recovered.entries.truncate(first.index.saturating_sub(keep_from) as usize);
                recovered.entries.extend(entries.into_iter().filter(|e| e.index >= keep_from));
            }
        }
        Ok(())
    }

    /// Appends one Ready's worth of state and makes it durable with one fsync.
    /// `hard_state` changes that only move `commit` are written but not synced.
    pub fn append(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        must_sync: bool,
    ) -> Result<(), WalError> {
        let mut buf = Vec::new();
        if !entries.is_empty() {
            let payload = bincode::serialize(&WalRecord::Entries(entries.to_vec())).expect("entries serialise");
            buf.extend_from_slice(&frame(&payload));
        }
        if let Some(hs) = hard_state {
            let payload = bincode::serialize(&WalRecord::HardState(*hs)).expect("hard state serialises");
            buf.extend_from_slice(&frame(&payload));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let path = Self::wal_path(&self.dir);
        self.file.write_all(&buf).map_err(io_err(&path))?;
        self.bytes_written += buf.len() as u64;
        if must_sync && self.fsync {
            self.file.sync_data().map_err(io_err(&path))?;
            self.syncs += 1;
        }
        Ok(())
    }

    /// Saves `snapshot` atomically, then rewrites the log to hold only `hard_state`
    /// and the entries after the snapshot.
    pub fn save_snapshot(
        &mut self,
        snapshot: &Snapshot,
        hard_state: &HardState,
        entries_after: &[Entry],
    ) -> Result<(), WalError> {
        let snapshot_path = Self::snapshot_path(&self.dir);
        let tmp = self.dir.join("snapshot.tmp");
        let payload = bincode::serialize(snapshot).expect("snapshot serialises");
        Self::write_file(&tmp, &frame(&payload), self.fsync)?;
        fs::rename(&tmp, &snapshot_path).map_err(io_err(&snapshot_path))?;
        if self.fsync {
            sync_dir(&self.dir)?;
        }
        let mut buf = frame(&bincode::serialize(&WalRecord::HardState(*hard_state)).expect("serialises"));
        if !entries_after.is_empty() {
            buf.extend_from_slice(&frame(
                &bincode::serialize(&WalRecord::Entries(entries_after.to_vec())).expect("serialises"),
            ));
        }
        let wal_tmp = self.dir.join("wal.log.tmp");
        Self::write_file(&wal_tmp, &buf, self.fsync)?;
        let path = Self::wal_path(&self.dir);
        fs::rename(&wal_tmp, &path).map_err(io_err(&path))?;
        if self.fsync {
            sync_dir(&self.dir)?;
        }
        self.file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        Ok(())
    }

    fn write_file(path: &Path, data: &[u8], durably: bool) -> Result<(), WalError> {
        let mut f = File::create(path).map_err(io_err(path))?;
        f.write_all(data).map_err(io_err(path))?;
        if durably {
            f.sync_all().map_err(io_err(path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{EntryPayload, Membership};

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, payload: EntryPayload::Command(format!("cmd{index}").into_bytes()) }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("faultline-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn write_some(dir: &Path) {
        let (mut wal, rec) = Wal::open(dir).unwrap();
        assert!(rec.entries.is_empty());
        wal.append(Some(&HardState { term: 1, vote: Some(1), commit: 0 }), &[entry(1, 1), entry(2, 1)], true).unwrap();
        wal.append(None, &[entry(3, 1)], true).unwrap();
        wal.append(Some(&HardState { term: 2, vote: Some(2), commit: 3 }), &[entry(3, 2), entry(4, 2)], true).unwrap();
    }

    #[test]
    fn replays_entries_with_truncation_and_hard_state() {
        let dir = temp_dir("replay");
        write_some(&dir);
        let (_, rec) = Wal::open(&dir).unwrap();
        assert_eq!(rec.hard_state, HardState { term: 2, vote: Some(2), commit: 3 });
        let ids: Vec<(u64, u64)> = rec.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(ids, vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
        assert_eq!(rec.torn_tail_bytes, 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn torn_tail_is_cut_and_never_applied() {
        let dir = temp_dir("torn");
        write_some(&dir);
        let path = dir.join("wal.log");
        let len = fs::metadata(&path).unwrap().len();
        // Tear the last record (the hard state of term 2) in half.
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();
        let (mut wal, rec) = Wal::open(&dir).unwrap();
        assert!(rec.torn_tail_bytes > 0);
        assert_eq!(rec.hard_state.term, 1, "the torn hard state is not applied");
        assert_eq!(rec.entries.last().map(|e| (e.index, e.term)), Some((4, 2)));
        // New appends follow the good prefix and survive the next open.
        wal.append(None, &[entry(5, 2)], true).unwrap();
        let (_, rec) = Wal::open(&dir).unwrap();
        assert_eq!(rec.torn_tail_bytes, 0);
        assert_eq!(rec.entries.len(), 5);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_tail_checksum_is_cut() {
        let dir = temp_dir("corrupt-tail");
        write_some(&dir);
        let path = dir.join("wal.log");
        let mut data = fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xFF;
        fs::write(&path, &data).unwrap();
        let (_, rec) = Wal::open(&dir).unwrap();
        assert!(rec.torn_tail_bytes > 0);
        assert_eq!(rec.hard_state.term, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_appended_to_the_tail_is_cut() {
        let dir = temp_dir("garbage");
        write_some(&dir);
        let path = dir.join("wal.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0xAB; 37]).unwrap();
        let (_, rec) = Wal::open(&dir).unwrap();
        assert_eq!(rec.torn_tail_bytes, 37);
        assert_eq!(rec.entries.len(), 4);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corruption_in_the_middle_refuses_to_start() {
        let dir = temp_dir("corrupt-middle");
        write_some(&dir);
        let path = dir.join("wal.log");
        let mut data = fs::read(&path).unwrap();
        data[12] ^= 0x01; // inside the first record's payload
        fs::write(&path, &data).unwrap();
        match Wal::open(&dir) {
            Err(WalError::CorruptMiddle { offset: 0, .. }) => {}
            other => panic!("expected CorruptMiddle, got {:?}", other.map(|(_, r)| r)),
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zero_filled_tail_is_cut() {
        let dir = temp_dir("zeros");
        write_some(&dir);
        let path = dir.join("wal.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        let (_, rec) = Wal::open(&dir).unwrap();
        assert_eq!(rec.torn_tail_bytes, 4096);
        assert_eq!(rec.entries.len(), 4);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshot_replaces_the_log_prefix_atomically() {
        let dir = temp_dir("snapshot");
        write_some(&dir);
        let (mut wal, _) = Wal::open(&dir).unwrap();
        let snapshot =
            Snapshot { index: 3, term: 2, membership: Membership::with_voters([1, 2, 3]), data: b"state".to_vec() };
        let hs = HardState { term: 2, vote: Some(2), commit: 3 };
        wal.save_snapshot(&snapshot, &hs, &[entry(4, 2)]).unwrap();
        wal.append(None, &[entry(5, 2)], true).unwrap();
        let (_, rec) = Wal::open(&dir).unwrap();
        assert_eq!(rec.snapshot, Some(snapshot));
        assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(rec.hard_state, hs);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A crash between `save_snapshot`'s two renames leaves the new snapshot beside
    /// the old log (Raft §7): entries after the snapshot's index are kept only if the
    /// old log's entry at that index has the snapshot's term; otherwise they belong
    /// to another leader's history (issue 19, item 6).
    #[test]
    fn raft_7_a_crash_between_the_snapshot_renames_keeps_only_a_matching_log() {
        for (snapshot_term, kept) in [(3, vec![]), (2, vec![4])] {
            let dir = temp_dir(&format!("snapshot-crash-{snapshot_term}"));
            write_some(&dir); // entries 1, 2 of term 1, then 3, 4 of term 2
            let snapshot = Snapshot {
                index: 3,
                term: snapshot_term,
                membership: Membership::with_voters([1, 2, 3]),
                data: b"state".to_vec(),
            };
            let payload = bincode::serialize(&snapshot).unwrap();
            Wal::write_file(&Wal::snapshot_path(&dir), &frame(&payload), false).unwrap();
            let (_, rec) = Wal::open(&dir).unwrap();
            assert_eq!(rec.snapshot, Some(snapshot));
            assert_eq!(rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(), kept, "snapshot term {snapshot_term}");
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}
