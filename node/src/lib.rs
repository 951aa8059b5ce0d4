//! faultline-node: a Raft-replicated key-value and event-log store.
