//! `faultline-faultfs --mountpoint DIR --backing DIR --control SOCKET [--max-saved-mib N]`
//!
//! Mounts faultfs and serves until SIGTERM, SIGINT or SIGHUP, or until its parent dies; then
//! unmounts and exits 0. Exit 1: the mount could not be made (the reason on stderr), 2: usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use faultline_faultfs::{mount, MountConfig};

fn usage(why: &str) -> ExitCode {
    eprintln!("faultline-faultfs: {why}");
    eprintln!("usage: faultline-faultfs --mountpoint DIR --backing DIR --control SOCKET [--max-saved-mib N]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut mountpoint = None;
    let mut backing = None;
    let mut control = None;
    let mut max_saved_mib: u64 = 256;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else { return usage(&format!("{flag} needs a value")) };
        match flag.as_str() {
            "--mountpoint" => mountpoint = Some(PathBuf::from(value)),
            "--backing" => backing = Some(PathBuf::from(value)),
            "--control" => control = Some(PathBuf::from(value)),
            "--max-saved-mib" => match value.parse() {
                Ok(n) => max_saved_mib = n,
                Err(_) => return usage("--max-saved-mib takes a number"),
            },
            _ => return usage(&format!("unknown flag {flag}")),
        }
    }
    let (Some(mountpoint), Some(backing), Some(control)) = (mountpoint, backing, control) else {
        return usage("--mountpoint, --backing and --control are required");
    };

    // Block the stop signals in every thread (threads inherit the mask) and wait for them here.
    // SAFETY: plain libc signal-set calls on a zeroed sigset_t owned by this frame.
    let signals = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        // When the process that started us dies, we are told as by SIGTERM.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        set
    };
    let parent = unsafe { libc::getppid() };

    let mut config = MountConfig::new(&mountpoint, backing, control);
    config.max_saved_bytes = max_saved_mib << 20;
    let guard = match mount(&config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("faultline-faultfs: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("faultline-faultfs: mounted at {}", mountpoint.display());
    loop {
        let timeout = libc::timespec { tv_sec: 0, tv_nsec: Duration::from_millis(200).as_nanos() as i64 };
        // SAFETY: signals is an initialised sigset_t; a null siginfo pointer is allowed.
        let got = unsafe { libc::sigtimedwait(&signals, std::ptr::null_mut(), &timeout) };
        // Reparented: the parent died before PR_SET_PDEATHSIG was set.
        let orphaned = unsafe { libc::getppid() } != parent;
        if got > 0 || orphaned || !faultline_faultfs::is_mounted(&mountpoint) {
            break;
        }
    }
    match guard.unmount() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultline-faultfs: {e}");
            ExitCode::from(1)
        }
    }
}
