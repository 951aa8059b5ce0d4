//! faultline-node's client wire format, defined once: the request and response types, the error
//! names, the one classification of each error (definite: the operation surely did not take
//! effect → history `fail`; indefinite: it may have → `info`), and the framing. The node
//! (`faultline-node`), its Rust client and faultline's harness all use this crate, so they cannot
//! disagree about what an answer means. Contract and table: docs/node-protocol.md.
//!
//! **Invariant:** no tokio, no sockets, no clock: plain serde types and pure functions, so a
//! blocking client (the harness's worker threads) and an async one (the node) share it.

pub mod classify;
pub mod frame;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use classify::{classify, Certainty, Class, ErrorName, OpAttempts, OpKind, Retry, Settled};
pub use frame::{
    encode_frame, read_frame_blocking, FrameError, MAX_CLIENT_FRAME_BYTES, MAX_PEER_FRAME_BYTES,
    MAX_RESPONSE_FRAME_BYTES,
};

/// One client request. `id` is echoed in the response, so a client may pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    #[serde(default)]
    pub client_id: u64,
    #[serde(default)]
    pub seq: u64,
    #[serde(flatten)]
    pub body: RequestBody,
}

/// What a request asks for. The tag is the `op` field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RequestBody {
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
    Append {
        stream: String,
        event: Value,
        /// Absent on the wire when `None` (as the harness has always sent it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_version: Option<u64>,
    },
    ReadStream {
        stream: String,
        /// Absent on the wire when 0 (as the harness has always sent it).
        #[serde(default, skip_serializing_if = "is_zero")]
        from_version: u64,
    },
    /// This node's view: id, role, term, leader, commit and applied indexes.
    Status,
    /// A checksum of this node's applied data and the index it was taken at, so a harness can
    /// compare replicas once they have applied the same prefix (a convergence check).
    Digest,
    /// Add `node_id` (already in every node's --peers) as a non-voting learner.
    AddLearner {
        node_id: u64,
    },
    /// Make learner `node_id` a voter (joint consensus).
    Promote {
        node_id: u64,
    },
    /// Remove `node_id` from the cluster (joint consensus for a voter).
    RemoveNode {
        node_id: u64,
    },
    /// Ask the leader to hand leadership to `node_id`.
    TransferLeader {
        node_id: u64,
    },
}

impl RequestBody {
    /// Whether the request is answered without entering the log (it changes nothing), which
    /// decides how its errors classify ([`classify`]).
    pub fn kind(&self) -> OpKind {
        match self {
            RequestBody::Read { .. } | RequestBody::ReadStream { .. } | RequestBody::Status | RequestBody::Digest => {
                OpKind::Read
            }
            _ => OpKind::Write,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One response, matched to its request by `id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    #[serde(flatten)]
    pub result: ResponseResult,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ResponseResult {
    Ok {
        value: Value,
    },
    Error {
        error: ErrorName,
        /// True: the operation surely did not take effect. The node always sends
        /// `classify(error, kind).is_definite()`; clients classify by `error` themselves.
        definite: bool,
        message: String,
        /// For `not-leader`: the leader's client address, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader_hint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader_id: Option<u64>,
    },
}

impl ResponseResult {
    /// An error answer with no leader hint, `definite` taken from the one classification.
    pub fn error(error: ErrorName, kind: OpKind, message: impl Into<String>) -> ResponseResult {
        ResponseResult::Error {
            error,
            definite: classify(error, kind).is_definite(),
            message: message.into(),
            leader_hint: None,
            leader_id: None,
        }
    }
}

/// How a faultline-node cluster replicates (`faultline-node --replication`, `faultline test
/// --replication`); docs/replication.md.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Replication {
    /// One Raft group: quorums, terms, linearizable.
    #[default]
    Raft,
    /// A baseline that loses acknowledged writes: the primary acknowledges after its own fsync and
    /// ships to backups asynchronously; failover without quorum or terms.
    PrimaryCopy,
}

impl Replication {
    pub const ALL: [Replication; 2] = [Replication::Raft, Replication::PrimaryCopy];

    pub fn as_str(self) -> &'static str {
        match self {
            Replication::Raft => "raft",
            Replication::PrimaryCopy => "primary-copy",
        }
    }
}

impl std::fmt::Display for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Replication {
    type Err = String;

    fn from_str(text: &str) -> Result<Replication, String> {
        Replication::ALL.into_iter().find(|r| r.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = Replication::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown replication {text:?} (one of: {})", names.join(", "))
        })
    }
}

/// The first frame on a peer connection (JSON), so the listener can tell peers from clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerHello {
    pub peer_hello: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_json_shape_matches_the_doc() {
        let r: Request = serde_json::from_value(
            json!({"id": 1, "client_id": 9, "seq": 2, "op": "cas", "key": "k", "from": 1, "to": 2}),
        )
        .unwrap();
        assert_eq!(r.body, RequestBody::Cas { key: "k".into(), from: json!(1), to: json!(2) });
        let r: Request =
            serde_json::from_value(json!({"id": 2, "op": "append", "stream": "s", "event": {"a": 1}})).unwrap();
        assert_eq!(r.body, RequestBody::Append { stream: "s".into(), event: json!({"a": 1}), expected_version: None });
        let ok = Response { id: 1, result: ResponseResult::Ok { value: json!(5) } };
        assert_eq!(serde_json::to_value(&ok).unwrap(), json!({"id": 1, "status": "ok", "value": 5}));
        let err = Response {
            id: 2,
            result: ResponseResult::Error {
                error: ErrorName::NotLeader,
                definite: true,
                message: "m".into(),
                leader_hint: Some("127.0.0.1:1".into()),
                leader_id: Some(3),
            },
        };
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"id": 2, "status": "error", "error": "not-leader", "definite": true, "message": "m", "leader_hint": "127.0.0.1:1", "leader_id": 3})
        );
    }

    /// The bytes the harness sent before this crate existed, kept so stored runs and old
    /// clients still speak to the node: an append without `expected_version` has no such field.
    #[test]
    fn the_harness_request_bytes_are_unchanged() {
        let request = Request {
            id: 7,
            client_id: 3,
            seq: 1,
            body: RequestBody::Append { stream: "s1".into(), event: json!(7), expected_version: None },
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"id": 7, "client_id": 3, "seq": 1, "op": "append", "stream": "s1", "event": 7})
        );
        let status = Request { id: 1, client_id: 0, seq: 0, body: RequestBody::Status };
        assert_eq!(serde_json::to_value(&status).unwrap(), json!({"id": 1, "client_id": 0, "seq": 0, "op": "status"}));
    }

    #[test]
    fn replication_names_parse_back() {
        for mode in Replication::ALL {
            assert_eq!(mode.as_str().parse::<Replication>(), Ok(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), json!(mode.as_str()));
        }
        assert!("chain".parse::<Replication>().is_err());
    }

    #[test]
    fn an_error_name_a_newer_node_might_send_still_parses() {
        let r: Response = serde_json::from_value(
            json!({"id": 3, "status": "error", "error": "disk-on-fire", "definite": true, "message": "?"}),
        )
        .unwrap();
        let ResponseResult::Error { error, .. } = r.result else { panic!("an error") };
        assert_eq!(error, ErrorName::Unrecognised);
    }
}
