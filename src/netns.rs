//! Low-level plumbing: running `ip` and `iptables` with a timeout, entering a network namespace
//! (for a spawned process or for the calling thread), and finding the processes inside one.
//!
//! **Invariant:** nothing here touches the root namespace's firewall; every iptables command is
//! run after `setns` into a namespace that faultline created.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;

/// How long any single `ip`/`iptables` command may take before we call it a harness failure.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `ip netns add` binds namespaces.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Names of all named network namespaces (`ip netns list` without parsing its output).
pub fn list_namespaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    names
}

/// The inode that identifies a namespace; the same number appears in `/proc/PID/ns/net`.
pub fn namespace_inode(name: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(netns_path(name)).ok().map(|m| m.ino())
}

/// The network-namespace inode of a process, or None if it is gone.
pub fn process_net_inode(pid: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let text = link.to_string_lossy();
    // The link reads "net:[4026532281]".
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Every process whose network namespace is one of `inodes`.
pub fn pids_in_namespaces(inodes: &[u64]) -> Vec<i32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_net_inode(*pid).is_some_and(|ino| inodes.contains(&ino)))
        .collect()
}

/// Runs `command` to completion, feeding it `stdin`, and kills it if it outlives `timeout`.
/// A non-zero exit is an error that quotes stderr.
pub fn run(mut command: Command, stdin: &[u8], timeout: Duration) -> Result<String> {
    let description = format!("{command:?}");
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().with_context(|| format!("spawning {description}"))?;
    {
        let mut child_stdin = child.stdin.take().expect("stdin was piped");
        // A command that exits early closes its stdin; its exit status says what went wrong.
        let _ = child_stdin.write_all(stdin);
    }
    // Read the pipes on helper threads so a chatty command cannot block on a full pipe while we
    // poll for its exit.
    let mut stdout_pipe = child.stdout.take().expect("stdout was piped");
    let mut stderr_pipe = child.stderr.take().expect("stderr was piped");
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let status = match wait_with_timeout(&mut child, timeout)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{description} did not finish within {timeout:?}");
        }
    };
    let stdout = stdout_reader.join().unwrap_or_default();
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        bail!("{description} failed ({status}): {}", stderr.trim());
    }
    Ok(stdout)
}

/// Polls a child until it exits or `timeout` passes; None means it is still running.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut sleep = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_millis(20));
    }
}

/// `ip [-n NAMESPACE] -batch -` with `lines` on stdin: one process for many changes.
pub fn ip_batch(namespace: Option<&str>, lines: &[String]) -> Result<()> {
    let mut command = Command::new("ip");
    if let Some(namespace) = namespace {
        command.args(["-n", namespace]);
    }
    command.args(["-batch", "-"]);
    let mut script = lines.join("\n");
    script.push('\n');
    run(command, script.as_bytes(), COMMAND_TIMEOUT)
        .with_context(|| format!("ip batch in {namespace:?}:\n{script}"))?;
    Ok(())
}

/// An open handle on a named namespace, to enter it from a thread or a child about to exec.
pub struct NamespaceHandle {
    file: File,
}

impl NamespaceHandle {
    pub fn open(name: &str) -> Result<NamespaceHandle> {
        let file = File::open(netns_path(name)).with_context(|| format!("opening network namespace {name}"))?;
        Ok(NamespaceHandle { file })
    }

    /// Moves the calling thread (only it) into this namespace; sockets it opens afterwards live
    /// there.
    pub fn enter_current_thread(&self) -> Result<()> {
        nix::sched::setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).context("setns into a network namespace")
    }

    /// Makes `command` run inside this namespace, in a session of its own (so a terminal's
    /// Ctrl-C reaches only the harness, which then cleans up), with no blocked signals.
    pub fn configure_command(&self, command: &mut Command) -> Result<()> {
        let fd = self.file.try_clone().context("duplicating a namespace fd")?;
        let raw_fd = fd.as_raw_fd();
        // The child gets its own copy of the fd table, so the fd stays valid until exec; `fd` is
        // moved into the closure to keep it open in the parent until spawn returns.
        unsafe {
            command.pre_exec(move || {
                let _keep_open = &fd;
                let borrowed = BorrowedFd::borrow_raw(raw_fd);
                nix::sched::setns(borrowed, CloneFlags::CLONE_NEWNET)?;
                nix::unistd::setsid()?;
                nix::sys::signal::SigSet::empty().thread_set_mask()?;
                Ok(())
            });
        }
        Ok(())
    }
}

/// Runs a command inside namespace `name` with a timeout (used for iptables).
pub fn run_in_namespace(name: &str, program: &str, args: &[&str], stdin: &[u8]) -> Result<String> {
    let handle = NamespaceHandle::open(name)?;
    let mut command = Command::new(program);
    command.args(args);
    handle.configure_command(&mut command)?;
    run(command, stdin, COMMAND_TIMEOUT).with_context(|| format!("in namespace {name}"))
}

/// Is `program` on PATH?
pub fn program_exists(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Refuses to go on unless we can create namespaces and run iptables in them.
pub fn check_prerequisites() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "faultline test needs root: it creates network namespaces, veth links and iptables \
             rules inside them. Run it with sudo (as root)."
        );
    }
    for program in ["ip", "iptables", "iptables-restore"] {
        if !program_exists(program) {
            bail!(
                "`{program}` is not installed; faultline needs iproute2 and iptables \
                 (nf_tables backend). Install them with: apt-get install -y iproute2 iptables"
            );
        }
    }
    Ok(())
}
