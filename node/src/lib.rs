//! faultline-node: a Raft-replicated key-value and event-log store.
//!
//! The Raft core ([`raft`]) is pure; [`store`] is the replicated state machine;
//! [`replica`] joins them into a deterministic node without IO, which both the
//! simulation ([`sim`]) and the tokio shell drive the same way.

pub mod bugs;
pub mod client;
pub mod primary_copy;
pub mod protocol;
pub mod raft;
pub mod replica;
pub mod server;
pub mod sim;
pub mod store;
pub mod wal;
