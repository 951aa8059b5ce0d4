//! Passthrough overhead: sequential appends (4 or 64 KiB each) with an fdatasync every N KiB, into the bare
//! backing directory and through faultfs over it. Run by `scripts/bench-faultfs.sh` (root).
//!
//! Usage: bench [TOTAL_MIB] (default 32)

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use faultline_faultfs::{mount, MountConfig};

fn run(dir: &Path, total_bytes: u64, write_kib: usize, fsync_every_kib: u64) -> f64 {
    let path = dir.join("bench.wal");
    let _ = std::fs::remove_file(&path);
    let mut f: File = OpenOptions::new().create(true).append(true).open(&path).unwrap();
    let block = vec![0xabu8; write_kib * 1024];
    let start = Instant::now();
    let mut since_sync = 0u64;
    let mut written = 0u64;
    while written < total_bytes {
        f.write_all(&block).unwrap();
        written += block.len() as u64;
        since_sync += block.len() as u64;
        if since_sync >= fsync_every_kib * 1024 {
            f.sync_data().unwrap();
            since_sync = 0;
        }
    }
    f.sync_data().unwrap();
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    total_bytes as f64 / (1 << 20) as f64 / secs
}

fn main() {
    let total_mib: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(32);
    let root = std::env::temp_dir().join(format!("faultfs-bench-{}", std::process::id()));
    let (mnt, backing) = (root.join("mnt"), root.join("backing"));
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&backing).unwrap();
    let guard = mount(&MountConfig::new(&mnt, &backing, root.join("control.sock"))).unwrap();
    println!("| write | fsync every | bare MiB/s | faultfs MiB/s | ratio |");
    println!("|---|---|---|---|---|");
    for (write_kib, every_kib) in [(4usize, 4u64), (4, 64), (4, 1024), (64, 1024)] {
        // Fewer bytes when every write is fsynced: the disk, not the layer, sets that pace.
        let total = if every_kib == 4 { total_mib << 18 } else { total_mib << 20 };
        let bare = run(&backing, total, write_kib, every_kib);
        let through = run(&mnt, total, write_kib, every_kib);
        println!("| {write_kib} KiB | {every_kib} KiB | {bare:.1} | {through:.1} | {:.2} |", through / bare);
        std::thread::sleep(Duration::from_millis(100));
    }
    guard.unmount().unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}
