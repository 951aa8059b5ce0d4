//! Real mounts (these tests need root and /dev/fuse): what survives a power loss through the
//! control socket, and that nothing stays mounted however the file system ends.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use faultline_faultfs::{is_mounted, mount, ControlClient, MountConfig, MountGuard};

struct Dirs {
    root: PathBuf,
    mountpoint: PathBuf,
    backing: PathBuf,
    socket: PathBuf,
}

fn dirs(test: &str) -> Dirs {
    let root = std::env::temp_dir().join(format!("faultfs-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let d =
        Dirs { mountpoint: root.join("mnt"), backing: root.join("backing"), socket: root.join("control.sock"), root };
    std::fs::create_dir_all(&d.mountpoint).unwrap();
    std::fs::create_dir_all(&d.backing).unwrap();
    d
}

impl Dirs {
    fn mount(&self) -> MountGuard {
        let guard = mount(&MountConfig::new(&self.mountpoint, &self.backing, &self.socket)).expect("mount");
        assert!(is_mounted(&self.mountpoint), "not in /proc/mounts after mount");
        guard
    }

    fn client(&self) -> ControlClient {
        ControlClient::new(&self.socket, Duration::from_secs(10))
    }

    fn at(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    fn unmount(&self, guard: MountGuard) {
        guard.unmount().expect("unmount");
        assert!(!is_mounted(&self.mountpoint), "still in /proc/mounts");
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = faultline_faultfs::unmount_stale(&self.mountpoint);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fsync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn append(path: &Path, bytes: &[u8]) -> File {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f
}

#[test]
fn lose_unfsynced_keeps_exactly_the_fsynced_data() {
    let d = dirs("lose");
    let guard = d.mount();
    let wal = d.at("wal");
    let f = File::create(&wal).unwrap();
    f.sync_all().unwrap();
    fsync_dir(&d.mountpoint);
    append(&wal, b"durable-1;").sync_data().unwrap();
    append(&wal, b"durable-2;").sync_all().unwrap();
    // Not fsynced: an append and an overwrite inside the durable part.
    append(&wal, b"volatile;");
    OpenOptions::new().write(true).open(&wal).unwrap().write_all_at(b"XXXX", 3).unwrap();
    assert_eq!(std::fs::read(&wal).unwrap(), b"durXXXX-1;durable-2;volatile;");
    let status = d.client().status().unwrap();
    assert_eq!((status.dirty_files, status.saved_bytes), (1, 4));

    let loss = d.client().lose_unfsynced().unwrap();
    assert_eq!(loss.files_reverted, 1);
    assert_eq!(std::fs::read(&wal).unwrap(), b"durable-1;durable-2;");
    d.unmount(guard);
    assert_eq!(std::fs::read(d.backing.join("wal")).unwrap(), b"durable-1;durable-2;");

    // A new mount over the same backing directory reads what survived.
    let guard = d.mount();
    assert_eq!(std::fs::read(&wal).unwrap(), b"durable-1;durable-2;");
    assert_eq!(d.client().status().unwrap().dirty_files, 0);
    d.unmount(guard);
}

#[test]
fn torn_write_keeps_only_a_prefix_of_the_last_write() {
    let d = dirs("torn");
    std::fs::write(d.backing.join("log"), b"base;").unwrap();
    let guard = d.mount();
    let log = d.at("log");
    append(&log, b"first-unsynced;");
    append(&log, b"LAST-WRITE-0123456789");
    let loss = d.client().torn_write(42).unwrap();
    let (len, kept) = loss.torn.expect("a write was torn");
    assert_eq!(len, 21);
    assert!(kept < len);
    // Durable content, then a hole where the earlier un-fsynced write was, then the prefix.
    let got = std::fs::read(&log).unwrap();
    let hole_end = 5 + 15;
    if kept > 0 {
        assert_eq!(got.len() as u64, hole_end + kept);
        assert_eq!(&got[..5], b"base;");
        assert!(got[5..hole_end as usize].iter().all(|b| *b == 0));
        assert_eq!(&got[hole_end as usize..], &b"LAST-WRITE-0123456789"[..kept as usize]);
    } else {
        assert_eq!(got, b"base;");
    }
    d.unmount(guard);
}

#[test]
fn create_and_rename_without_a_directory_fsync_are_lost() {
    let d = dirs("namespace");
    std::fs::write(d.backing.join("old"), b"old contents").unwrap();
    std::fs::create_dir(d.backing.join("sub")).unwrap();
    let guard = d.mount();
    // Created and its data fsynced, but its directory never: lost.
    let f = File::create(d.at("sub/new")).unwrap();
    (&f).write_all(b"data").unwrap();
    f.sync_all().unwrap();
    // Renamed without a directory fsync: back under its old name.
    std::fs::rename(d.at("old"), d.at("renamed")).unwrap();
    // Created and its directory fsynced: survives, empty since its data was never fsynced.
    let kept = File::create(d.at("kept")).unwrap();
    (&kept).write_all(b"unsynced").unwrap();
    fsync_dir(&d.mountpoint);
    // Unlinked without a directory fsync: comes back.
    std::fs::write(d.backing.join("sub/durable"), b"d").unwrap();
    std::fs::remove_file(d.at("sub/durable")).unwrap();

    d.client().lose_unfsynced().unwrap();
    let names = |p: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    // The rename was committed by the root's fsync (it happened before it): `renamed` stays.
    assert_eq!(names(&d.mountpoint), ["kept", "renamed", "sub"]);
    assert_eq!(std::fs::read(d.at("kept")).unwrap(), b"");
    assert_eq!(names(&d.at("sub")), ["durable"]);

    // A rename with no directory fsync at all goes back.
    std::fs::rename(d.at("renamed"), d.at("again")).unwrap();
    d.client().lose_unfsynced().unwrap();
    assert_eq!(names(&d.mountpoint), ["kept", "renamed", "sub"]);
    assert_eq!(std::fs::read(d.at("renamed")).unwrap(), b"old contents");
    d.unmount(guard);
    assert_eq!(names(&d.backing), ["kept", "renamed", "sub"], "trash left in the backing directory");
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_faultline-faultfs"))
}

fn spawn_binary(d: &Dirs) -> Child {
    let child = Command::new(binary())
        .args(["--mountpoint", d.mountpoint.to_str().unwrap()])
        .args(["--backing", d.backing.to_str().unwrap()])
        .args(["--control", d.socket.to_str().unwrap()])
        .spawn()
        .unwrap();
    wait_for(|| is_mounted(&d.mountpoint), "mount");
    child
}

fn wait_for(what: impl Fn() -> bool, name: &str) {
    let start = Instant::now();
    while !what() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_binary_unmounts_on_sigterm_and_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let d = dirs(&format!("signal{signal}"));
        let mut child = spawn_binary(&d);
        std::fs::write(d.at("f"), b"x").unwrap();
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        assert!(status.success(), "exit after signal {signal}: {status:?}");
        assert!(!is_mounted(&d.mountpoint), "still mounted after signal {signal}");
    }
}

#[test]
fn nothing_stays_mounted_when_the_file_system_or_its_parent_is_killed() {
    // SIGKILL of the file system itself: libfuse's auto_unmount helper takes the mount down.
    let d = dirs("sigkill");
    let mut child = spawn_binary(&d);
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for(|| !is_mounted(&d.mountpoint), "unmount after SIGKILL");

    // SIGKILL of the process that started it: the file system hears of it and unmounts.
    let d = dirs("parent");
    let script = format!(
        "{} --mountpoint {} --backing {} --control {} & sleep 30",
        binary().display(),
        d.mountpoint.display(),
        d.backing.display(),
        d.socket.display()
    );
    let mut parent = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    wait_for(|| is_mounted(&d.mountpoint), "mount under a parent");
    parent.kill().unwrap();
    parent.wait().unwrap();
    wait_for(|| !is_mounted(&d.mountpoint), "unmount after the parent's death");
}

#[test]
fn a_truncation_without_fsync_is_undone() {
    let d = dirs("truncate");
    std::fs::write(d.backing.join("snap"), b"durable snapshot").unwrap();
    std::fs::write(d.backing.join("meta"), b"0123456789").unwrap();
    let guard = d.mount();
    std::fs::write(d.at("snap"), b"new").unwrap(); // O_TRUNC, then a short write
    OpenOptions::new().write(true).open(d.at("meta")).unwrap().set_len(4).unwrap();
    assert_eq!(std::fs::read(d.at("snap")).unwrap(), b"new");
    d.client().lose_unfsynced().unwrap();
    assert_eq!(std::fs::read(d.at("snap")).unwrap(), b"durable snapshot");
    assert_eq!(std::fs::read(d.at("meta")).unwrap(), b"0123456789");
    d.unmount(guard);
}

#[test]
fn past_the_memory_bound_the_largest_journal_is_written_back() {
    let d = dirs("bound");
    std::fs::write(d.backing.join("big"), vec![b'a'; 64 * 1024]).unwrap();
    std::fs::write(d.backing.join("small"), vec![b'a'; 1024]).unwrap();
    let mut config = MountConfig::new(&d.mountpoint, &d.backing, &d.socket);
    config.max_saved_bytes = 32 * 1024;
    let guard = mount(&config).unwrap();
    OpenOptions::new().write(true).open(d.at("small")).unwrap().write_all_at(&[b'b'; 1024], 0).unwrap();
    OpenOptions::new().write(true).open(d.at("big")).unwrap().write_all_at(&[b'b'; 40 * 1024], 0).unwrap();
    let status = d.client().status().unwrap();
    assert!(status.saved_bytes <= 32 * 1024, "{status:?}");
    d.client().lose_unfsynced().unwrap();
    // The kernel sends the big write in chunks: those up to the one that passed the bound were
    // written back and survive (at least 31 KiB); later chunks were journaled anew and are
    // undone. The small journal stayed within the bound and is undone.
    let big = std::fs::read(d.at("big")).unwrap();
    assert!(big[..31 * 1024].iter().all(|b| *b == b'b'), "written back part lost");
    assert!(big[40 * 1024..].iter().all(|b| *b == b'a'));
    assert_eq!(std::fs::read(d.backing.join("small")).unwrap(), vec![b'a'; 1024], "backing");
    assert!(std::fs::read(d.at("small")).unwrap() == vec![b'a'; 1024], "through the mount");
    d.unmount(guard);
}

#[test]
fn dropping_the_guard_unmounts_even_with_files_open() {
    let d = dirs("busy");
    let guard = d.mount();
    let open = File::create(d.at("held")).unwrap();
    let cwd_holder = Command::new("sleep").arg("30").current_dir(&d.mountpoint).spawn();
    drop(guard);
    assert!(!is_mounted(&d.mountpoint), "still mounted with a file open");
    assert!(!faultline_faultfs::faultfs_mounts().contains(&d.mountpoint));
    drop(open);
    if let Ok(mut child) = cwd_holder {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn a_backing_directory_inside_the_mount_point_is_refused() {
    let d = dirs("inside");
    let inner = d.mountpoint.join("backing");
    std::fs::create_dir(&inner).unwrap();
    let err = mount(&MountConfig::new(&d.mountpoint, &inner, &d.socket)).err().expect("refused");
    assert!(err.to_string().contains("inside the mount point"), "{err}");
    assert!(!is_mounted(&d.mountpoint));
}

#[test]
fn the_control_socket_answers_bad_lines_with_err_and_drops_overlong_ones() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;
    let d = dirs("control");
    let guard = d.mount();
    let stream = UnixStream::connect(&d.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut ask = |line: &[u8]| {
        (&stream).write_all(line).unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        reply
    };
    assert!(ask(b"format-disk\n").starts_with("err bad control line"));
    assert!(ask(b"status\n").starts_with("ok status dirty-files=0"), "the connection goes on after an error");
    let mut long = vec![b'x'; 5000];
    long.push(b'\n');
    assert!(ask(&long).starts_with("err line longer than 4096 bytes"));
    // A typed client still gets through: one connection at a time, and that one was dropped.
    assert_eq!(d.client().status().unwrap().dirty_files, 0);
    d.unmount(guard);
}
