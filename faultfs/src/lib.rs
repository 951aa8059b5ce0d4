//! faultline-faultfs: a FUSE passthrough file system that remembers what was written but not
//! fsynced, and on command forgets it as a power loss would (`lose-unfsynced`) or keeps only a
//! prefix of the last write (`torn-write`). See `docs/faultfs.md`.
//!
//! - [`ledger`]: the pure core (durable against volatile state, as an undo journal);
//! - [`protocol`]: the control socket's typed line protocol, [`client`] its client;
//! - [`mount`]: mounting over a directory, with a guard that unmounts on drop.

pub mod client;
mod fs;
pub mod ledger;
pub mod mount;
pub mod protocol;

pub use client::{ClientError, ControlClient};
pub use mount::{faultfs_mounts, is_mounted, mount, unmount_stale, MountConfig, MountError, MountGuard};
