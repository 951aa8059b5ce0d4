//! The framing of both protocols: a 4-byte big-endian length, then that many bytes (JSON for
//! clients, bincode between peers after a JSON hello). The async reader lives with the node
//! (`faultline_node::protocol::read_frame`); this module has the limits, the encoder and the
//! blocking reader, with one error type for both.

use std::io::Read;

/// The largest frame a node accepts from a client; larger ones close the connection.
pub const MAX_CLIENT_FRAME_BYTES: u32 = 1 << 20;
/// The largest frame between peers (a snapshot travels in one frame).
pub const MAX_PEER_FRAME_BYTES: u32 = 512 << 20;
/// The largest response a client accepts from a node (a `read_stream` of a long stream or a
/// `digest` with its 50,000 entry checksums can pass the request limit).
pub const MAX_RESPONSE_FRAME_BYTES: u32 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// `[u32 BE length][payload]`.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads one frame from a blocking reader, refusing lengths over `max` before allocating.
/// A read timeout of the underlying socket comes back as `FrameError::Io`.
pub fn read_frame_blocking<R: Read>(reader: &mut R, max: u32) -> Result<Vec<u8>, FrameError> {
    let mut len_bytes = [0u8; 4];
    match reader.read_exact(&mut len_bytes) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let len = u32::from_be_bytes(len_bytes);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_and_an_oversized_one_is_refused_before_allocating() {
        let frame = encode_frame(b"{\"id\":1}");
        assert_eq!(&frame[..4], &[0, 0, 0, 8]);
        assert_eq!(read_frame_blocking(&mut &frame[..], 8).unwrap(), b"{\"id\":1}");
        assert!(matches!(read_frame_blocking(&mut &frame[..], 7), Err(FrameError::TooLarge { len: 8, max: 7 })));
        assert!(matches!(read_frame_blocking(&mut &[][..], 8), Err(FrameError::Closed)));
    }
}
