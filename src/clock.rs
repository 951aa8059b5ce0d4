//! The nodes' clocks: every node runs under Debian's libfaketime (LD_PRELOAD) when a clock fault is
//! asked for, its wall clock offset by what the harness writes to the node's timestamp file
//! (`FAKETIME_TIMESTAMP_FILE`, re-read on every call with `FAKETIME_NO_CACHE`). Only the wall
//! clock moves (`FAKETIME_DONT_FAKE_MONOTONIC`), as when NTP steps a machine's clock: a program
//! that times its timeouts and leases by the monotonic clock must not care.
//!
//! A binary that ignores LD_PRELOAD (statically linked), or reads the clock without libc (Go reads
//! it through the vDSO itself), would record faults that did nothing: such a binary is refused
//! before the run, with the reason ([`preload_obstacle`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::read::elf::ElfFile64;
use object::{Endianness, Object};

use crate::cluster::{node_name, Cluster, NodeId};

/// Where Debian's libfaketime puts its thread-safe library (package libfaketime).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Why LD_PRELOAD of libfaketime cannot change what `binary` reads as the time; None when it can.
/// Pure on the file's bytes (ELF: a dynamic binary has an `.interp` section; Go leaves
/// `.go.buildinfo` or `.note.go.buildid`).
pub fn preload_obstacle_in(data: &[u8]) -> Option<String> {
    if data.starts_with(b"#!") {
        // A script: its interpreter is what runs, and it is checked by the caller.
        return None;
    }
    let file = match ElfFile64::<Endianness>::parse(data) {
        Ok(file) => file,
        Err(e) => return Some(format!("it is not a 64-bit ELF executable ({e})")),
    };
    if file.section_by_name(".go.buildinfo").is_some() || file.section_by_name(".note.go.buildid").is_some() {
        return Some(
            "it is a Go binary: Go reads the clock through the vDSO itself, not through libc, so \
             libfaketime's LD_PRELOAD cannot change it"
                .to_string(),
        );
    }
    if file.section_by_name(".interp").is_none() {
        return Some("it is statically linked: the dynamic loader, and so LD_PRELOAD, never runs".to_string());
    }
    None
}

/// [`preload_obstacle_in`] of a file on disk.
pub fn preload_obstacle(binary: &Path) -> Result<Option<String>> {
    let data = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    Ok(preload_obstacle_in(&data))
}

/// The clock files of one run, one per node.
pub struct ClockLayer {
    files: BTreeMap<NodeId, PathBuf>,
}

impl ClockLayer {
    /// Refuses, before anything is created, clock faults that could not take effect.
    pub fn check_possible(binary: Option<&Path>, system: &str) -> Result<()> {
        if !Path::new(LIBFAKETIME).exists() {
            bail!("clock faults need libfaketime ({LIBFAKETIME} is missing): apt-get install libfaketime");
        }
        let Some(binary) = binary else {
            bail!("clock faults need to check the binary of {system}, and it names none");
        };
        if let Some(why) = preload_obstacle(binary)? {
            bail!("clock faults cannot act on {system} ({}): {why}", binary.display());
        }
        Ok(())
    }

    /// Writes a zero offset for every node and gives the cluster the environment that starts each
    /// node under libfaketime.
    pub fn install(cluster: &Cluster) -> Result<ClockLayer> {
        let mut files = BTreeMap::new();
        for node in cluster.node_ids() {
            let file = cluster.run_dir.join(format!("{}.faketime", node_name(node)));
            let layer_file = file.clone();
            write_offset(&file, 0)?;
            cluster.set_node_env(
                node,
                vec![
                    ("LD_PRELOAD".to_string(), LIBFAKETIME.to_string()),
                    ("FAKETIME_TIMESTAMP_FILE".to_string(), layer_file.display().to_string()),
                    ("FAKETIME_NO_CACHE".to_string(), "1".to_string()),
                    ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
                ],
            );
            files.insert(node, file);
        }
        Ok(ClockLayer { files })
    }

    /// Sets `node`'s wall clock to real time plus `offset_ms` (negative: behind).
    pub fn set_offset(&self, node: NodeId, offset_ms: i64) -> Result<()> {
        let file = self.files.get(&node).with_context(|| format!("{} has no clock file", node_name(node)))?;
        write_offset(file, offset_ms)
    }

    /// The clock files by node, for a strobe thread that outlives a borrow of the layer.
    pub fn files(&self) -> BTreeMap<NodeId, PathBuf> {
        self.files.clone()
    }
}

/// libfaketime's relative format: "+1.5" is one and a half seconds ahead. Written to a temporary
/// file and renamed, so a reader never sees half a line.
pub fn write_offset(file: &Path, offset_ms: i64) -> Result<()> {
    let text = format_offset(offset_ms);
    let temporary = file.with_extension("faketime.tmp");
    std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, file).with_context(|| format!("renaming to {}", file.display()))
}

/// The line libfaketime reads for an offset in milliseconds. Pure.
pub fn format_offset(offset_ms: i64) -> String {
    let sign = if offset_ms < 0 { '-' } else { '+' };
    let magnitude = offset_ms.unsigned_abs();
    format!("{sign}{}.{:03}\n", magnitude / 1000, magnitude % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_in_libfaketimes_relative_format() {
        assert_eq!(format_offset(0), "+0.000\n");
        assert_eq!(format_offset(1500), "+1.500\n");
        assert_eq!(format_offset(-2005), "-2.005\n");
    }

    #[test]
    fn a_dynamic_binary_passes_and_other_files_are_refused_with_the_reason() {
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(preload_obstacle_in(&own), None, "this test binary is dynamically linked");
        let why = preload_obstacle_in(b"not an executable").unwrap();
        assert!(why.contains("not a 64-bit ELF"), "{why}");
        assert_eq!(preload_obstacle_in(b"#!/bin/sh\n"), None);
    }
}
