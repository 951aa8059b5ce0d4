//! The wire formats: the client protocol (JSON in length-prefixed frames, see
//! docs/node-protocol.md) and the peer protocol (bincode Raft messages in the
//! same framing, after a JSON hello).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::store::Op;

/// The largest frame a node accepts from a client; larger ones close the connection.
pub const MAX_CLIENT_FRAME_BYTES: u32 = 1 << 20;
/// The largest frame between peers (a snapshot travels in one frame).
pub const MAX_PEER_FRAME_BYTES: u32 = 512 << 20;

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
        #[serde(default)]
        expected_version: Option<u64>,
    },
    ReadStream {
        stream: String,
        #[serde(default)]
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
    pub fn into_op(self) -> Option<Op> {
        Some(match self {
            RequestBody::Read { key } => Op::Read { key },
            RequestBody::Write { key, value } => Op::Write { key, value },
            RequestBody::Cas { key, from, to } => Op::Cas { key, from, to },
            RequestBody::Delete { key } => Op::Delete { key },
            RequestBody::Append { stream, event, expected_version } => Op::Append { stream, event, expected_version },
            RequestBody::ReadStream { stream, from_version } => Op::ReadStream { stream, from_version },
            RequestBody::Status
            | RequestBody::Digest
            | RequestBody::TransferLeader { .. }
            | RequestBody::AddLearner { .. }
            | RequestBody::Promote { .. }
            | RequestBody::RemoveNode { .. } => return None,
        })
    }

    pub fn from_op(op: Op) -> RequestBody {
        match op {
            Op::Read { key } => RequestBody::Read { key },
            Op::Write { key, value } => RequestBody::Write { key, value },
            Op::Cas { key, from, to } => RequestBody::Cas { key, from, to },
            Op::Delete { key } => RequestBody::Delete { key },
            Op::Append { stream, event, expected_version } => RequestBody::Append { stream, event, expected_version },
            Op::ReadStream { stream, from_version } => RequestBody::ReadStream { stream, from_version },
        }
    }
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
        /// A short stable name: see [`error_names`].
        error: String,
        /// True: the operation surely did not take effect. False: it may have.
        definite: bool,
        message: String,
        /// For `not-leader`: the leader's client address, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader_hint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader_id: Option<u64>,
    },
}

/// The error names a node sends.
pub mod error_names {
    pub const NOT_LEADER: &str = "not-leader";
    pub const CAS_MISMATCH: &str = "cas-mismatch";
    pub const WRONG_EXPECTED_VERSION: &str = "version-mismatch";
    pub const STALE_SEQ: &str = "stale-seq";
    pub const LEADERSHIP_LOST: &str = "leadership-lost";
    pub const PROPOSAL_DROPPED: &str = "proposal-dropped";
    pub const READ_NOT_CONFIRMED: &str = "read-not-confirmed";
    pub const OVERLOADED: &str = "overloaded";
    pub const TIMEOUT: &str = "timeout";
    pub const BAD_REQUEST: &str = "bad-request";
    pub const SHUTTING_DOWN: &str = "shutting-down";
    pub const CHANGE_IN_PROGRESS: &str = "change-in-progress";
}

/// The first frame on a peer connection (JSON), so the listener can tell peers from clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerHello {
    pub peer_hello: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one `[u32 BE length][payload]` frame, refusing lengths over `max`
/// before allocating anything.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: u32) -> Result<Vec<u8>, FrameError> {
    let mut len_bytes = [0u8; 4];
    match reader.read_exact(&mut len_bytes).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let len = u32::from_be_bytes(len_bytes);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload).await?;
    Ok(payload)
}

pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, payload: &[u8]) -> std::io::Result<()> {
    writer.write_all(&encode_frame(payload)).await
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
                error: "not-leader".into(),
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
}
