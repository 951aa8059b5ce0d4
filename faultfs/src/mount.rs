//! Mounting: the FUSE session, the control socket's thread, and a guard that takes both down.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption};

use crate::fs::{new_state, FaultFs, Shared};
use crate::protocol::{Reply, Request, MAX_LINE_BYTES};

/// Where to mount, over what, and where to listen.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// The directory the program under test uses (a node's data directory).
    pub mountpoint: PathBuf,
    /// Where the data really lives; it must not be inside `mountpoint`.
    pub backing: PathBuf,
    /// The control socket (Unix), created here; an old socket file is replaced.
    pub control_socket: PathBuf,
    /// Bound on the durable bytes kept to undo overwrites; past it the largest journal is
    /// written back (see `docs/faultfs.md`).
    pub max_saved_bytes: u64,
}

impl MountConfig {
    pub fn new(
        mountpoint: impl Into<PathBuf>,
        backing: impl Into<PathBuf>,
        control_socket: impl Into<PathBuf>,
    ) -> Self {
        MountConfig {
            mountpoint: mountpoint.into(),
            backing: backing.into(),
            control_socket: control_socket.into(),
            max_saved_bytes: 256 << 20,
        }
    }
}

/// Why a mount could not be made or taken down.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("/dev/fuse is missing: this kernel or container offers no FUSE")]
    NoFuse,
    #[error("backing directory {path}: {source}")]
    Backing { path: PathBuf, source: std::io::Error },
    /// Serving the mount would mean reading through itself.
    #[error("backing directory {backing} lies inside the mount point {mountpoint}")]
    BackingInsideMount { backing: PathBuf, mountpoint: PathBuf },
    #[error("control socket {path}: {source}")]
    Control { path: PathBuf, source: std::io::Error },
    #[error("mounting faultfs at {path} (are fuse3 and libfuse3 installed?): {source}")]
    Mount { path: PathBuf, source: std::io::Error },
    #[error("faultfs at {path} is still mounted after {waited_ms} ms")]
    StillMounted { path: PathBuf, waited_ms: u64 },
}

/// How long teardown waits for the kernel to drop the mount.
const UNMOUNT_WAIT: Duration = Duration::from_secs(10);
/// How often the control thread looks at its stop flag while idle.
const CONTROL_POLL: Duration = Duration::from_millis(50);
/// How long one control connection may take to send its line.
const CONTROL_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A mounted faultfs. Dropping it stops the control socket and unmounts.
pub struct MountGuard {
    session: Option<BackgroundSession>,
    control: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    mountpoint: PathBuf,
    control_socket: PathBuf,
    backing: PathBuf,
}

/// Mounts faultfs over `config.mountpoint`. The mount asks libfuse for `auto_unmount`, so the
/// kernel mount goes away even when this process is killed with SIGKILL.
pub fn mount(config: &MountConfig) -> Result<MountGuard, MountError> {
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::NoFuse);
    }
    let backing =
        config.backing.canonicalize().map_err(|source| MountError::Backing { path: config.backing.clone(), source })?;
    let mountpoint = config
        .mountpoint
        .canonicalize()
        .map_err(|source| MountError::Mount { path: config.mountpoint.clone(), source })?;
    if backing.starts_with(&mountpoint) {
        return Err(MountError::BackingInsideMount { backing, mountpoint });
    }
    let state = new_state(backing.clone(), config.max_saved_bytes)
        .map_err(|source| MountError::Backing { path: config.backing.clone(), source })?;
    let control = start_control(&config.control_socket, state.clone())?;
    let options = [
        MountOption::FSName("faultfs".to_string()),
        MountOption::Subtype("faultfs".to_string()),
        MountOption::AllowOther,
        MountOption::AutoUnmount,
        MountOption::DefaultPermissions,
    ];
    let session = match fuser::spawn_mount2(FaultFs { state }, &config.mountpoint, &options) {
        Ok(s) => s,
        Err(source) => {
            stop_control(control, &config.control_socket);
            return Err(MountError::Mount { path: config.mountpoint.clone(), source });
        }
    };
    Ok(MountGuard {
        session: Some(session),
        control: Some(control),
        mountpoint: config.mountpoint.clone(),
        control_socket: config.control_socket.clone(),
        backing,
    })
}

impl MountGuard {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits (bounded) until the kernel no longer lists the mount.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), MountError> {
        if let Some(control) = self.control.take() {
            stop_control(control, &self.control_socket);
        }
        if let Some(session) = self.session.take() {
            drop(session);
        }
        wait_unmounted(&self.mountpoint, UNMOUNT_WAIT)?;
        // Without a power loss the volatile state is what the disk holds: what waits in the
        // trash was removed for good.
        let trash = self.backing.join(crate::ledger::TRASH_NAME);
        std::fs::remove_dir_all(&trash).map_err(|source| MountError::Backing { path: trash, source })
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.session.is_some() {
            if let Err(e) = self.teardown() {
                eprintln!("faultfs: {e}; detaching it");
                let _ = unmount_stale(&self.mountpoint);
            }
        }
    }
}

/// Every faultfs mount point the kernel lists in /proc/mounts, for `faultline cleanup` to
/// find mounts a killed harness did not record.
pub fn faultfs_mounts() -> Vec<PathBuf> {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return Vec::new() };
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let source = fields.next()?;
            let target = fields.next()?;
            // /proc/mounts escapes space, tab, newline and backslash as octal.
            let target = target.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n");
            (source == "faultfs").then(|| PathBuf::from(target.replace("\\134", "\\")))
        })
        .collect()
}

/// Whether a faultfs is mounted at `mountpoint`, by /proc/mounts.
pub fn is_mounted(mountpoint: &Path) -> bool {
    let want = mountpoint.canonicalize().unwrap_or_else(|_| mountpoint.to_path_buf());
    faultfs_mounts().contains(&want)
}

fn wait_unmounted(mountpoint: &Path, wait: Duration) -> Result<(), MountError> {
    let start = Instant::now();
    while is_mounted(mountpoint) {
        if start.elapsed() > wait {
            return Err(MountError::StillMounted {
                path: mountpoint.to_path_buf(),
                waited_ms: wait.as_millis() as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Takes down a faultfs mount left behind by a killed process (lazily: a program still using
/// it keeps its open files until it closes them). For `faultline cleanup`.
pub fn unmount_stale(mountpoint: &Path) -> Result<(), MountError> {
    if !is_mounted(mountpoint) {
        return Ok(());
    }
    let c_path = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes())
        .map_err(|e| MountError::Mount { path: mountpoint.to_path_buf(), source: std::io::Error::other(e) })?;
    // SAFETY: c_path is a valid C string.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } != 0 {
        let source = std::io::Error::last_os_error();
        return Err(MountError::Mount { path: mountpoint.to_path_buf(), source });
    }
    wait_unmounted(mountpoint, UNMOUNT_WAIT)
}

fn start_control(path: &Path, state: Shared) -> Result<(Arc<AtomicBool>, JoinHandle<()>), MountError> {
    let err = |source| MountError::Control { path: path.to_path_buf(), source };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_seen = stop.clone();
    let thread = std::thread::Builder::new()
        .name("faultfs-control".into())
        .spawn(move || {
            // One connection at a time: nothing queues but the listener's backlog.
            while !stop_seen.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &state),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(CONTROL_POLL),
                    Err(e) => {
                        eprintln!("faultfs: control socket accept: {e}");
                        std::thread::sleep(CONTROL_POLL);
                    }
                }
            }
        })
        .map_err(err)?;
    Ok((stop, thread))
}

fn stop_control((stop, thread): (Arc<AtomicBool>, JoinHandle<()>), path: &Path) {
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    let _ = std::fs::remove_file(path);
}

/// Answers the lines of one connection until it closes, errs or sends too long a line.
fn serve(stream: UnixStream, state: &Shared) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(CONTROL_READ_TIMEOUT)).is_err() {
        return;
    }
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match (&mut reader).take(MAX_LINE_BYTES as u64).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = if !line.ends_with('\n') {
            Reply::Error(format!("line longer than {MAX_LINE_BYTES} bytes"))
        } else {
            match Request::parse(line.trim_end()) {
                Ok(request) => state.lock().expect("faultfs: state lock poisoned").control(request),
                Err(e) => Reply::Error(e.to_string()),
            }
        };
        let done = matches!(reply, Reply::Error(_)) && !line.ends_with('\n');
        if writer.write_all(format!("{reply}\n").as_bytes()).is_err() || done {
            return;
        }
    }
}
