//! The wire formats as the node uses them: the types, error names and their classification come
//! from the one definition in `faultline-node-proto` (docs/node-protocol.md); what stays here is
//! what needs tokio or the store: the async frame reader and writer, and the conversion between
//! a request and the store's [`Op`].

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use faultline_node_proto::{
    classify, encode_frame, Certainty, Class, ErrorName, FrameError, OpAttempts, OpKind, PeerHello, Replication,
    Request, RequestBody, Response, ResponseResult, Retry, Settled, MAX_CLIENT_FRAME_BYTES, MAX_PEER_FRAME_BYTES,
    MAX_RESPONSE_FRAME_BYTES,
};

use crate::store::Op;

/// The store operation a data request asks for; `None` for status, digest and admin commands.
pub fn request_op(body: RequestBody) -> Option<Op> {
    Some(match body {
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

/// The request body for a store operation.
pub fn op_request(op: Op) -> RequestBody {
    match op {
        Op::Read { key } => RequestBody::Read { key },
        Op::Write { key, value } => RequestBody::Write { key, value },
        Op::Cas { key, from, to } => RequestBody::Cas { key, from, to },
        Op::Delete { key } => RequestBody::Delete { key },
        Op::Append { stream, event, expected_version } => RequestBody::Append { stream, event, expected_version },
        Op::ReadStream { stream, from_version } => RequestBody::ReadStream { stream, from_version },
    }
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

pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, payload: &[u8]) -> std::io::Result<()> {
    writer.write_all(&encode_frame(payload)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_store_op_converts_to_a_request_and_back() {
        let ops = [
            Op::Read { key: "k".into() },
            Op::Write { key: "k".into(), value: json!(1) },
            Op::Cas { key: "k".into(), from: json!(1), to: json!(2) },
            Op::Delete { key: "k".into() },
            Op::Append { stream: "s".into(), event: json!({"a": 1}), expected_version: Some(3) },
            Op::ReadStream { stream: "s".into(), from_version: 2 },
        ];
        for op in ops {
            let body = op_request(op.clone());
            assert_eq!(body.kind() == OpKind::Read, op.is_read());
            assert_eq!(request_op(body), Some(op));
        }
        assert_eq!(request_op(RequestBody::Status), None);
    }
}
