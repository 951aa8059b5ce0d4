//! What `faultline test` and `faultline bench` share around a cluster's life: the interrupt flag
//! set by SIGINT/SIGTERM/SIGHUP (so a Ctrl-C ends a run through the normal heal-and-clean-up
//! path) and the run id that prefixes every namespace, chain and mount of a run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

use crate::cluster::fnv1a;

/// Set by SIGINT/SIGTERM/SIGHUP: stop issuing ops, heal, clean up, exit.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Blocks the termination signals in this thread (and so in every thread it starts) and turns
/// them into `INTERRUPTED`; `command` names who stops in the message.
pub fn install_signal_thread(command: &'static str) -> Result<()> {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(signal);
    }
    signals.thread_block().context("blocking termination signals")?;
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || loop {
            if let Ok(signal) = signals.wait() {
                eprintln!("\n{command}: {signal} received: stopping, healing and cleaning up");
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
        })
        .context("spawning the signal thread")?;
    Ok(())
}

/// A fresh six-character run id (letters and digits), from the process id, `salt` and the clock.
pub fn make_run_id(salt: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut hash = fnv1a(format!("{salt}-{}-{nanos}", std::process::id()).as_bytes());
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| {
            let c = alphabet[(hash % 36) as usize] as char;
            hash /= 36;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_six_plain_characters_and_differ() {
        let (a, b) = (make_run_id("test"), make_run_id("bench"));
        assert_eq!(a.len(), 6);
        assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(a, b);
    }
}
