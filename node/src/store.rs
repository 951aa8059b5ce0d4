//! The replicated state machine: a key-value map, append-only event streams, and
//! exactly-once client sessions (dissertation chapter 6.3).
//!
//! **Invariant:** applying the same sequence of commands gives the same state
//! and the same results on every node; nothing here reads a clock or a random
//! source. Sessions expire by log position, not by time.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One operation on the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Read {
        key: String,
    },
    Write {
        key: String,
        value: Value,
    },
    Cas {
        key: String,
        from: Value,
        to: Value,
    },
    Delete {
        key: String,
    },
    /// Appends `event`; with `expected_version`, only if the stream has exactly that many events.
    Append {
        stream: String,
        event: Value,
        expected_version: Option<u64>,
    },
    /// Events from index `from_version` (0-based) to the end.
    ReadStream {
        stream: String,
        from_version: u64,
    },
}

impl Op {
    /// Reads are served by ReadIndex and never enter the log.
    pub fn is_read(&self) -> bool {
        matches!(self, Op::Read { .. } | Op::ReadStream { .. })
    }
}

/// A command as it is stored in the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub client_id: u64,
    pub seq: u64,
    pub op: Op,
}

/// Why the state machine refused an operation. The entry that got this answer did not change the
/// state; whether the operation surely did not take effect is `faultline_node_proto::classify`'s
/// call (`stale-seq`: an earlier entry of the same seq may have).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum OpError {
    #[error("cas-mismatch: current value is {current}")]
    CasMismatch { current: Value },
    #[error("version-mismatch: stream has {current} events")]
    WrongExpectedVersion { current: u64 },
    #[error("stale-seq: seq {seq} is older than the session's last seq {last_seq}")]
    StaleSeq { seq: u64, last_seq: u64 },
}

impl OpError {
    /// The short name used on the wire and in histories.
    pub fn name(&self) -> &'static str {
        self.error_name().as_str()
    }

    /// The name on the wire (one definition: `faultline_node_proto::ErrorName`).
    pub fn error_name(&self) -> faultline_node_proto::ErrorName {
        use faultline_node_proto::ErrorName;
        match self {
            OpError::CasMismatch { .. } => ErrorName::CasMismatch,
            OpError::WrongExpectedVersion { .. } => ErrorName::VersionMismatch,
            OpError::StaleSeq { .. } => ErrorName::StaleSeq,
        }
    }
}

pub type OpResult = Result<Value, OpError>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Session {
    last_seq: u64,
    last_result: OpResult,
    last_index: u64,
}

/// Limits on sessions, so that memory stays bounded.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionLimits {
    pub max_sessions: usize,
    /// A session with no command in this many log entries expires.
    pub expiry_entries: u64,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits { max_sessions: 100_000, expiry_entries: 10_000_000 }
    }
}

/// The whole replicated state. Serialises to a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    kv: BTreeMap<String, Value>,
    streams: BTreeMap<String, Vec<Value>>,
    sessions: BTreeMap<u64, Session>,
    /// (last_index, client_id), oldest first, for expiry.
    session_order: BTreeSet<(u64, u64)>,
    limits: SessionLimits,
    /// Planted bug `no-dedup`: ignore sessions, so retries apply twice.
    #[serde(skip)]
    bug_no_dedup: bool,
}

impl Store {
    pub fn new(limits: SessionLimits, bug_no_dedup: bool) -> Store {
        Store { limits, bug_no_dedup, ..Store::default() }
    }

    pub fn set_bug_no_dedup(&mut self, on: bool) {
        self.bug_no_dedup = on;
    }

    /// Evaluates a read against the current state.
    pub fn read(&self, op: &Op) -> OpResult {
        match op {
            Op::Read { key } => Ok(self.kv.get(key).cloned().unwrap_or(Value::Null)),
            Op::ReadStream { stream, from_version } => {
                let events = self.streams.get(stream).map_or(&[][..], |v| &v[..]);
                let from = (*from_version).min(events.len() as u64) as usize;
                Ok(Value::Array(events[from..].to_vec()))
            }
            other => panic!("not a read: {other:?}"),
        }
    }

    /// The cached result if this (client, seq) was already applied.
    pub fn cached_result(&self, client_id: u64, seq: u64) -> Option<OpResult> {
        if self.bug_no_dedup {
            return None;
        }
        let session = self.sessions.get(&client_id)?;
        (session.last_seq == seq).then(|| session.last_result.clone())
    }

    /// Applies a committed command at log position `index`.
    pub fn apply(&mut self, index: u64, command: &Command) -> OpResult {
        // The duplicate check comes first: evicting sessions first could evict this
        // client's own, and its retry would run twice.
        if !self.bug_no_dedup {
            if let Some(session) = self.sessions.get(&command.client_id) {
                if command.seq == session.last_seq {
                    return session.last_result.clone();
                }
                if command.seq < session.last_seq {
                    return Err(OpError::StaleSeq { seq: command.seq, last_seq: session.last_seq });
                }
            }
        }
        self.expire_sessions(index, command.client_id);
        let result = self.apply_op(&command.op);
        if let Some(old) = self.sessions.get(&command.client_id) {
            self.session_order.remove(&(old.last_index, command.client_id));
        }
        self.sessions.insert(
            command.client_id,
            Session { last_seq: command.seq, last_result: result.clone(), last_index: index },
        );
        self.session_order.insert((index, command.client_id));
        result
    }

    /// Drops sessions idle for too long, and the oldest ones while a new session for
    /// `client_id` would not fit. Deterministic: every replica evicts the same ones.
    fn expire_sessions(&mut self, index: u64, applying: u64) {
        while let Some(&(last_index, oldest)) = self.session_order.first() {
            let too_old = last_index.saturating_add(self.limits.expiry_entries) < index;
            let needs_room = !self.sessions.contains_key(&applying);
            let too_many = needs_room && self.session_order.len() >= self.limits.max_sessions;
            if !too_old && !too_many {
                break;
            }
            self.session_order.pop_first();
            self.sessions.remove(&oldest);
        }
    }

    fn apply_op(&mut self, op: &Op) -> OpResult {
        match op {
            Op::Read { .. } | Op::ReadStream { .. } => self.read(op),
            Op::Write { key, value } => {
                self.kv.insert(key.clone(), value.clone());
                Ok(Value::Null)
            }
            Op::Cas { key, from, to } => {
                let current = self.kv.get(key).cloned().unwrap_or(Value::Null);
                if &current != from {
                    return Err(OpError::CasMismatch { current });
                }
                self.kv.insert(key.clone(), to.clone());
                Ok(Value::Null)
            }
            Op::Delete { key } => {
                self.kv.remove(key);
                Ok(Value::Null)
            }
            Op::Append { stream, event, expected_version } => {
                let events = self.streams.entry(stream.clone()).or_default();
                let current = events.len() as u64;
                if let Some(expected) = expected_version {
                    if *expected != current {
                        return Err(OpError::WrongExpectedVersion { current });
                    }
                }
                events.push(event.clone());
                // The version of the new event, so the writer can append after it.
                Ok(Value::from(current + 1))
            }
        }
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// A checksum of the data (keys and streams, not sessions): two replicas that applied the same
    /// log prefix have the same digest, so replicas that diverged can be told apart from outside.
    pub fn data_digest(&self) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&serde_json::to_vec(&self.kv).expect("keys serialise"));
        hasher.update(&serde_json::to_vec(&self.streams).expect("streams serialise"));
        hasher.finalize()
    }

    pub fn to_snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("store serialises")
    }

    pub fn from_snapshot(data: &[u8], bug_no_dedup: bool) -> Result<Store, serde_json::Error> {
        let mut store: Store = serde_json::from_slice(data)?;
        store.bug_no_dedup = bug_no_dedup;
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmd(client_id: u64, seq: u64, op: Op) -> Command {
        Command { client_id, seq, op }
    }

    #[test]
    fn kv_read_write_cas_delete() {
        let mut s = Store::new(SessionLimits::default(), false);
        let k = || "k".to_string();
        assert_eq!(s.read(&Op::Read { key: k() }), Ok(Value::Null));
        s.apply(1, &cmd(1, 1, Op::Write { key: k(), value: json!(3) })).unwrap();
        assert_eq!(s.read(&Op::Read { key: k() }), Ok(json!(3)));
        assert_eq!(
            s.apply(2, &cmd(1, 2, Op::Cas { key: k(), from: json!(4), to: json!(5) })),
            Err(OpError::CasMismatch { current: json!(3) })
        );
        s.apply(3, &cmd(1, 3, Op::Cas { key: k(), from: json!(3), to: json!(5) })).unwrap();
        assert_eq!(s.read(&Op::Read { key: k() }), Ok(json!(5)));
        s.apply(4, &cmd(1, 4, Op::Delete { key: k() })).unwrap();
        assert_eq!(s.read(&Op::Read { key: k() }), Ok(Value::Null));
    }

    #[test]
    fn streams_append_with_expected_version() {
        let mut s = Store::new(SessionLimits::default(), false);
        let st = || "s".to_string();
        assert_eq!(
            s.apply(1, &cmd(1, 1, Op::Append { stream: st(), event: json!("a"), expected_version: Some(0) })),
            Ok(json!(1))
        );
        assert_eq!(
            s.apply(2, &cmd(2, 1, Op::Append { stream: st(), event: json!("b"), expected_version: Some(0) })),
            Err(OpError::WrongExpectedVersion { current: 1 })
        );
        assert_eq!(
            s.apply(3, &cmd(2, 2, Op::Append { stream: st(), event: json!("c"), expected_version: None })),
            Ok(json!(2))
        );
        assert_eq!(s.read(&Op::ReadStream { stream: st(), from_version: 0 }), Ok(json!(["a", "c"])));
        assert_eq!(s.read(&Op::ReadStream { stream: st(), from_version: 1 }), Ok(json!(["c"])));
        assert_eq!(s.read(&Op::ReadStream { stream: st(), from_version: 9 }), Ok(json!([])));
    }

    #[test]
    fn the_digest_covers_the_data_and_survives_a_snapshot() {
        let mut a = Store::new(SessionLimits::default(), false);
        let mut b = Store::new(SessionLimits::default(), false);
        assert_eq!(a.data_digest(), b.data_digest());
        a.apply(1, &cmd(1, 1, Op::Write { key: "k".into(), value: json!(1) })).unwrap();
        b.apply(1, &cmd(2, 1, Op::Write { key: "k".into(), value: json!(1) })).unwrap();
        assert_eq!(a.data_digest(), b.data_digest(), "sessions are not data");
        b.apply(2, &cmd(2, 2, Op::Append { stream: "k".into(), event: json!(1), expected_version: None })).unwrap();
        assert_ne!(a.data_digest(), b.data_digest(), "a stream with the key's name is other data");
        let restored = Store::from_snapshot(&b.to_snapshot(), false).unwrap();
        assert_eq!(restored.data_digest(), b.data_digest());
    }

    #[test]
    fn dissertation_6_3_retried_command_applies_once() {
        let mut s = Store::new(SessionLimits::default(), false);
        let append = cmd(7, 1, Op::Append { stream: "s".into(), event: json!(1), expected_version: None });
        assert_eq!(s.apply(1, &append), Ok(json!(1)));
        assert_eq!(s.apply(2, &append), Ok(json!(1)), "retry returns the cached result");
        assert_eq!(s.read(&Op::ReadStream { stream: "s".into(), from_version: 0 }), Ok(json!([1])));
        assert_eq!(s.cached_result(7, 1), Some(Ok(json!(1))));
    }

    #[test]
    fn no_dedup_bug_applies_retries_twice() {
        let mut s = Store::new(SessionLimits::default(), true);
        let append = cmd(7, 1, Op::Append { stream: "s".into(), event: json!(1), expected_version: None });
        s.apply(1, &append).unwrap();
        s.apply(2, &append).unwrap();
        assert_eq!(s.read(&Op::ReadStream { stream: "s".into(), from_version: 0 }), Ok(json!([1, 1])));
    }

    #[test]
    fn sessions_expire_by_log_position_and_count() {
        let mut s = Store::new(SessionLimits { max_sessions: 3, expiry_entries: 10 }, false);
        for client in 1..=3 {
            s.apply(client, &cmd(client, 1, Op::Write { key: "k".into(), value: json!(client) })).unwrap();
        }
        assert_eq!(s.session_count(), 3);
        s.apply(4, &cmd(4, 1, Op::Delete { key: "k".into() })).unwrap();
        assert_eq!(s.session_count(), 3, "the oldest session made room");
        assert_eq!(s.cached_result(1, 1), None);
        s.apply(100, &cmd(5, 1, Op::Delete { key: "k".into() })).unwrap();
        assert_eq!(s.session_count(), 1, "inactive sessions expired");
    }

    /// Dissertation §6.3: at the session limit, a retry must find its own session
    /// rather than evict it to make room, or it runs twice (issue 19, item 4).
    #[test]
    fn dissertation_6_3_a_retry_at_the_session_limit_does_not_evict_its_own_session() {
        let mut s = Store::new(SessionLimits { max_sessions: 2, expiry_entries: 1_000 }, false);
        let cas = cmd(1, 1, Op::Cas { key: "k".into(), from: Value::Null, to: json!(1) });
        assert_eq!(s.apply(1, &cas), Ok(Value::Null));
        s.apply(2, &cmd(2, 1, Op::Write { key: "other".into(), value: json!(2) })).unwrap();
        assert_eq!(s.apply(3, &cas), Ok(Value::Null), "the retry is answered from its session");
        assert_eq!(s.session_count(), 2);
    }

    #[test]
    fn snapshot_round_trip() {
        let mut s = Store::new(SessionLimits::default(), false);
        s.apply(1, &cmd(1, 1, Op::Write { key: "k".into(), value: json!([1, 2]) })).unwrap();
        let restored = Store::from_snapshot(&s.to_snapshot(), false).unwrap();
        assert_eq!(restored, s);
    }
}
