//! The FUSE shell: every operation goes through to the backing directory at once, and the
//! [`Ledger`] is told before anything changes, so that it can undo what was not fsynced.
//!
//! fuser runs one request at a time on its session thread; the control thread takes the same
//! lock, so a power loss never interleaves with an operation.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use crate::ledger::{Kind, Ledger, LossReport, NodeId, Step, TornWrite, ROOT, TRASH_NAME};
use crate::protocol::{Loss, Reply, Request as ControlRequest, Status};

/// No kernel caching of entries or attributes: after a power loss the next lookup must see the
/// backing directory as it now is.
const TTL: Duration = Duration::ZERO;

struct Handle {
    file: File,
    /// Opened with O_SYNC or O_DSYNC: every write is durable when it returns.
    sync_writes: bool,
}

/// The state the session thread and the control thread share.
pub(crate) struct State {
    backing: PathBuf,
    ledger: Ledger,
    handles: HashMap<u64, Handle>,
    next_handle: u64,
    /// Bound on saved durable bytes; past it the largest journal is written back (fsynced), as
    /// a kernel writes dirty pages back: un-fsynced data may survive a power loss.
    max_saved_bytes: u64,
}

pub(crate) type Shared = Arc<Mutex<State>>;

pub(crate) fn new_state(backing: PathBuf, max_saved_bytes: u64) -> io::Result<Shared> {
    let trash = backing.join(TRASH_NAME);
    // Leftovers of an earlier mount are volatile objects nobody can name any more.
    if trash.exists() {
        std::fs::remove_dir_all(&trash)?;
    }
    std::fs::create_dir(&trash)?;
    Ok(Arc::new(Mutex::new(State {
        backing,
        ledger: Ledger::new(),
        handles: HashMap::new(),
        next_handle: 1,
        max_saved_bytes,
    })))
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn kind_of(meta: &Metadata) -> Kind {
    if meta.is_dir() {
        Kind::Dir
    } else if meta.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

fn file_type(meta: &Metadata) -> FileType {
    let t = meta.file_type();
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else if t.is_char_device() {
        FileType::CharDevice
    } else {
        FileType::RegularFile
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn attr(ino: NodeId, meta: &Metadata) -> FileAttr {
    FileAttr {
        ino,
        size: meta.size(),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: time(meta.ctime(), meta.ctime_nsec()),
        kind: file_type(meta),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: meta.blksize() as u32,
        flags: 0,
    }
}

fn read_exact_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

impl State {
    fn real(&self, relative: &str) -> PathBuf {
        self.backing.join(relative)
    }

    fn path_of(&self, node: NodeId) -> Result<PathBuf, i32> {
        self.ledger.path(node).map(|p| self.real(&p)).ok_or(libc::ENOENT)
    }

    /// The node at `parent/name`, learning it from the backing directory if need be.
    fn resolve(&mut self, parent: NodeId, name: &[u8]) -> Result<(NodeId, Metadata), i32> {
        if parent == ROOT && name == TRASH_NAME.as_bytes() {
            return Err(libc::ENOENT);
        }
        let relative = self.ledger.child_path(parent, name).ok_or(libc::ENOENT)?;
        let meta = std::fs::symlink_metadata(self.real(&relative)).map_err(|e| errno(&e))?;
        Ok((self.ledger.discover(parent, name, kind_of(&meta)), meta))
    }

    fn run_steps(&self, steps: &[Step]) -> io::Result<()> {
        for step in steps {
            match step {
                Step::Move { from, to } => std::fs::rename(self.real(from), self.real(to))?,
                Step::RemoveTree { path } => {
                    let real = self.real(path);
                    if std::fs::symlink_metadata(&real)?.is_dir() {
                        std::fs::remove_dir_all(real)?;
                    } else {
                        std::fs::remove_file(real)?;
                    }
                }
                Step::SetLen { path, len } => OpenOptions::new().write(true).open(self.real(path))?.set_len(*len)?,
                Step::WriteAt { path, offset, bytes } => {
                    OpenOptions::new().write(true).open(self.real(path))?.write_all_at(bytes, *offset)?
                }
            }
        }
        Ok(())
    }

    /// Writes back the largest journals until the saved bytes are within their bound.
    fn write_back_if_over_bound(&mut self) -> io::Result<()> {
        while self.ledger.saved_bytes() > self.max_saved_bytes {
            let Some(node) = self.ledger.largest_journal() else { break };
            let path = self.path_of(node).map_err(io::Error::from_raw_os_error)?;
            File::open(path)?.sync_data()?;
            self.ledger.file_synced(node);
        }
        Ok(())
    }

    fn write(&mut self, node: NodeId, fh: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let handle = self.handles.get(&fh).ok_or(libc::EBADF)?;
        // One fstat per journal, not per write: a journaled file's durable length is known.
        let current_len =
            if self.ledger.is_journaled(node) { 0 } else { handle.file.metadata().map_err(|e| errno(&e))?.len() };
        let file = &handle.file;
        self.ledger
            .will_write(node, current_len, offset, data.len() as u64, &mut |o, n| read_exact_at(file, o, n))
            .map_err(|e| errno(&e))?;
        file.write_all_at(data, offset).map_err(|e| errno(&e))?;
        if handle.sync_writes {
            file.sync_data().map_err(|e| errno(&e))?;
            self.ledger.file_synced(node);
        }
        self.write_back_if_over_bound().map_err(|e| errno(&e))?;
        Ok(data.len() as u32)
    }

    fn truncate(&mut self, node: NodeId, new_len: u64) -> Result<(), i32> {
        let path = self.path_of(node)?;
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| errno(&e))?;
        let current_len = file.metadata().map_err(|e| errno(&e))?.len();
        self.ledger
            .will_truncate(node, current_len, new_len, &mut |o, n| read_exact_at(&file, o, n))
            .map_err(|e| errno(&e))?;
        file.set_len(new_len).map_err(|e| errno(&e))?;
        self.write_back_if_over_bound().map_err(|e| errno(&e))
    }

    fn remove(&mut self, parent: NodeId, name: &[u8], want_dir: bool) -> Result<(), i32> {
        let (_, meta) = self.resolve(parent, name)?;
        let relative = self.ledger.child_path(parent, name).ok_or(libc::ENOENT)?;
        if want_dir {
            if !meta.is_dir() {
                return Err(libc::ENOTDIR);
            }
            let mut entries = std::fs::read_dir(self.real(&relative)).map_err(|e| errno(&e))?;
            if entries.next().is_some() {
                return Err(libc::ENOTEMPTY);
            }
        } else if meta.is_dir() {
            return Err(libc::EISDIR);
        }
        let (_, steps) = self.ledger.removed(parent, name).ok_or(libc::ENOENT)?;
        self.run_steps(&steps).map_err(|e| errno(&e))
    }

    fn rename(
        &mut self,
        parent: NodeId,
        name: &[u8],
        new_parent: NodeId,
        new_name: &[u8],
        flags: u32,
    ) -> Result<(), i32> {
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(libc::EINVAL);
        }
        if new_parent == ROOT && new_name == TRASH_NAME.as_bytes() {
            return Err(libc::EPERM);
        }
        let (node, meta) = self.resolve(parent, name)?;
        match self.resolve(new_parent, new_name) {
            Ok((target, target_meta)) => {
                if target == node {
                    return Ok(());
                }
                if flags & libc::RENAME_NOREPLACE != 0 {
                    return Err(libc::EEXIST);
                }
                match (meta.is_dir(), target_meta.is_dir()) {
                    (true, false) => return Err(libc::ENOTDIR),
                    (false, true) => return Err(libc::EISDIR),
                    (true, true) => {
                        let path = self.path_of(target)?;
                        if std::fs::read_dir(path).map_err(|e| errno(&e))?.next().is_some() {
                            return Err(libc::ENOTEMPTY);
                        }
                    }
                    (false, false) => {}
                }
            }
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        // A directory may not move into itself.
        let from = self.ledger.path(node).ok_or(libc::ENOENT)?;
        let to_parent = self.ledger.path(new_parent).ok_or(libc::ENOENT)?;
        if meta.is_dir() && (to_parent == from || to_parent.starts_with(&format!("{from}/"))) {
            return Err(libc::EINVAL);
        }
        let steps = self.ledger.renamed(parent, name, new_parent, new_name);
        self.run_steps(&steps).map_err(|e| errno(&e))
    }

    fn add_handle(&mut self, file: File, flags: i32) -> u64 {
        let fh = self.next_handle;
        self.next_handle += 1;
        let sync_writes = flags & (libc::O_SYNC | libc::O_DSYNC) != 0;
        self.handles.insert(fh, Handle { file, sync_writes });
        fh
    }

    /// Carries out one control request.
    pub(crate) fn control(&mut self, request: ControlRequest) -> Reply {
        match request {
            ControlRequest::Status => Reply::Status(Status {
                dirty_files: self.ledger.dirty_files() as u64,
                dirty_dirs: self.ledger.dirty_dirs() as u64,
                saved_bytes: self.ledger.saved_bytes(),
            }),
            ControlRequest::LoseUnfsynced => self.lose(None),
            ControlRequest::TornWrite { seed } => self.lose(Some(seed)),
        }
    }

    fn lose(&mut self, torn_seed: Option<u64>) -> Reply {
        let mut torn = None;
        if let (Some(seed), Some(write)) = (torn_seed, self.ledger.last_unsynced_write()) {
            // The last write is the newest content of its range: read it back before undoing.
            let read = self.path_of(write.node).map_err(io::Error::from_raw_os_error).and_then(|path| {
                let file = File::open(path)?;
                let len = file.metadata()?.len();
                let end = (write.offset + write.len).min(len);
                read_exact_at(&file, write.offset.min(end), end.saturating_sub(write.offset))
            });
            match read {
                Ok(bytes) if !bytes.is_empty() => {
                    let keep = (splitmix64(seed) % bytes.len() as u64) as usize;
                    torn = Some(TornWrite { write, prefix: bytes[..keep].to_vec() });
                }
                Ok(_) => {}
                Err(e) => return Reply::Error(format!("reading the last write back: {e}")),
            }
        }
        let torn_len = torn.as_ref().map(|t| t.write.len);
        let (steps, report) = self.ledger.lose_unfsynced(torn);
        // Open files of the killed program now name objects that may be gone.
        self.handles.clear();
        if let Err(e) = self.run_steps(&steps).and_then(|()| self.sync_backing()) {
            return Reply::Error(format!("restoring the durable state: {e}"));
        }
        let LossReport { files_reverted, entries_reverted, objects_deleted, torn_kept_bytes } = report;
        Reply::Lost(Loss { files_reverted, entries_reverted, objects_deleted, torn: torn_len.zip(torn_kept_bytes) })
    }

    /// The state after a power loss is durable by definition: make it so on the backing disk.
    fn sync_backing(&self) -> io::Result<()> {
        let dir = File::open(&self.backing)?;
        use std::os::fd::AsRawFd;
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A well-mixed value from a seed (SplitMix64), so that `torn-write seed=N` is reproducible
/// without a random number generator dependency.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `fuser::Filesystem` over the shared state.
pub(crate) struct FaultFs {
    pub(crate) state: Shared,
}

impl FaultFs {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock means the ledger may be out of step with the disk:
        // stop serving rather than limp on.
        self.state.lock().expect("faultfs: state lock poisoned")
    }
}

impl Filesystem for FaultFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.lock().resolve(parent, name.as_bytes()) {
            Ok((node, meta)) => reply.entry(&TTL, &attr(node, &meta), 0),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let state = self.lock();
        match state.path_of(ino).and_then(|p| std::fs::symlink_metadata(p).map_err(|e| errno(&e))) {
            Ok(meta) => reply.attr(&TTL, &attr(ino, &meta)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut state = self.lock();
        let result = (|| -> Result<Metadata, i32> {
            let path = state.path_of(ino)?;
            if let Some(size) = size {
                state.truncate(ino, size)?;
            }
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|e| errno(&e))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid).map_err(|e| errno(&e))?;
            }
            if atime.is_some() || mtime.is_some() {
                let file = File::open(&path).map_err(|e| errno(&e))?;
                let mut times = std::fs::FileTimes::new();
                let when = |t: TimeOrNow| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                if let Some(t) = atime {
                    times = times.set_accessed(when(t));
                }
                if let Some(t) = mtime {
                    times = times.set_modified(when(t));
                }
                file.set_times(times).map_err(|e| errno(&e))?;
            }
            std::fs::symlink_metadata(&path).map_err(|e| errno(&e))
        })();
        match result {
            Ok(meta) => reply.attr(&TTL, &attr(ino, &meta)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let state = self.lock();
        match state.path_of(ino).and_then(|p| std::fs::read_link(p).map_err(|e| errno(&e))) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut state = self.lock();
        let result = (|| -> Result<(NodeId, Metadata), i32> {
            if parent == ROOT && name.as_bytes() == TRASH_NAME.as_bytes() {
                return Err(libc::EPERM);
            }
            let relative = state.ledger.child_path(parent, name.as_bytes()).ok_or(libc::ENOENT)?;
            let path = state.real(&relative);
            std::fs::create_dir(&path).map_err(|e| errno(&e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !umask & 0o7777))
                .map_err(|e| errno(&e))?;
            let node = state.ledger.created(parent, name.as_bytes(), Kind::Dir);
            Ok((node, std::fs::symlink_metadata(&path).map_err(|e| errno(&e))?))
        })();
        match result {
            Ok((node, meta)) => reply.entry(&TTL, &attr(node, &meta), 0),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&mut self, _req: &Request<'_>, parent: u64, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let mut state = self.lock();
        let result = (|| -> Result<(NodeId, Metadata), i32> {
            if parent == ROOT && link_name.as_bytes() == TRASH_NAME.as_bytes() {
                return Err(libc::EPERM);
            }
            let relative = state.ledger.child_path(parent, link_name.as_bytes()).ok_or(libc::ENOENT)?;
            let path = state.real(&relative);
            std::os::unix::fs::symlink(target, &path).map_err(|e| errno(&e))?;
            let node = state.ledger.created(parent, link_name.as_bytes(), Kind::Other);
            Ok((node, std::fs::symlink_metadata(&path).map_err(|e| errno(&e))?))
        })();
        match result {
            Ok((node, meta)) => reply.entry(&TTL, &attr(node, &meta), 0),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.lock().remove(parent, name.as_bytes(), false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.lock().remove(parent, name.as_bytes(), true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        match self.lock().rename(parent, name.as_bytes(), newparent, newname.as_bytes(), flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut state = self.lock();
        let result = (|| -> Result<u64, i32> {
            let path = state.path_of(ino)?;
            let access = flags & libc::O_ACCMODE;
            if flags & libc::O_TRUNC != 0 && access != libc::O_RDONLY {
                state.truncate(ino, 0)?;
            }
            // The kernel gives every write its offset, O_APPEND included; O_SYNC is ours to
            // honour with an fsync per write.
            let custom = flags & !(libc::O_ACCMODE | libc::O_APPEND | libc::O_TRUNC | libc::O_CREAT | libc::O_EXCL);
            let custom = custom & !(libc::O_SYNC | libc::O_DSYNC | libc::O_DIRECT);
            let file = OpenOptions::new()
                .read(true)
                .write(access != libc::O_RDONLY)
                .custom_flags(custom)
                .open(&path)
                .map_err(|e| errno(&e))?;
            Ok(state.add_handle(file, flags))
        })();
        match result {
            Ok(fh) => reply.opened(fh, 0),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.lock();
        let result = (|| -> Result<(NodeId, Metadata, u64), i32> {
            if parent == ROOT && name.as_bytes() == TRASH_NAME.as_bytes() {
                return Err(libc::EPERM);
            }
            let relative = state.ledger.child_path(parent, name.as_bytes()).ok_or(libc::ENOENT)?;
            let path = state.real(&relative);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode & !umask & 0o7777)
                .open(&path)
                .map_err(|e| errno(&e))?;
            let node = state.ledger.created(parent, name.as_bytes(), Kind::File);
            let meta = file.metadata().map_err(|e| errno(&e))?;
            Ok((node, meta, state.add_handle(file, flags)))
        })();
        match result {
            Ok((node, meta, fh)) => reply.created(&TTL, &attr(node, &meta), 0, fh, 0),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let state = self.lock();
        let Some(handle) = state.handles.get(&fh) else { return reply.error(libc::EBADF) };
        let mut buf = vec![0; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match handle.file.read_at(&mut buf[filled..], offset as u64 + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(&e)),
            }
        }
        reply.data(&buf[..filled]);
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self.lock().write(ino, fh, offset as u64, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        // close() promises nothing about durability.
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh);
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, fh: u64, datasync: bool, reply: ReplyEmpty) {
        let mut state = self.lock();
        let result = match state.handles.get(&fh) {
            Some(h) if datasync => h.file.sync_data(),
            Some(h) => h.file.sync_all(),
            None => Err(io::Error::from_raw_os_error(libc::EBADF)),
        };
        // Only what reached the backing disk counts as durable.
        match result {
            Ok(()) => {
                state.ledger.file_synced(ino);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let mut state = self.lock();
        let result = (|| -> Result<Vec<(NodeId, FileType, Vec<u8>)>, i32> {
            let path = state.path_of(ino)?;
            let mut names: Vec<(Vec<u8>, Metadata)> = Vec::new();
            for entry in std::fs::read_dir(&path).map_err(|e| errno(&e))? {
                let entry = entry.map_err(|e| errno(&e))?;
                let name = entry.file_name().as_bytes().to_vec();
                if ino == ROOT && name == TRASH_NAME.as_bytes() {
                    continue;
                }
                match entry.metadata() {
                    Ok(meta) => names.push((name, meta)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(errno(&e)),
                }
            }
            names.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = vec![(ino, FileType::Directory, b".".to_vec()), (ino, FileType::Directory, b"..".to_vec())];
            for (name, meta) in names {
                let node = state.ledger.discover(ino, &name, kind_of(&meta));
                out.push((node, file_type(&meta), name));
            }
            Ok(out)
        })();
        match result {
            Ok(entries) => {
                for (i, (node, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(node, (i + 1) as i64, kind, OsStr::from_bytes(&name)) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let mut state = self.lock();
        let result = (|| -> Result<(), i32> {
            let path = state.path_of(ino)?;
            File::open(path).and_then(|d| d.sync_all()).map_err(|e| errno(&e))?;
            let steps = state.ledger.dir_synced(ino);
            state.run_steps(&steps).map_err(|e| errno(&e))
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let state = self.lock();
        let c_path = match std::ffi::CString::new(state.backing.as_os_str().as_bytes()) {
            Ok(p) => p,
            Err(_) => return reply.error(libc::EINVAL),
        };
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c_path is a valid C string and st a writable statvfs.
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
            return reply.error(errno(&io::Error::last_os_error()));
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            st.f_namemax as u32,
            st.f_frsize as u32,
        );
    }
}
