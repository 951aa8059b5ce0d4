//! A minimal blocking HTTP/1.1 client for etcd's v3 JSON gateway: `POST` a JSON body on a
//! keep-alive connection, read one response (Content-Length or chunked), everything bounded by a
//! deadline. A few dozen lines instead of a dependency, so that the runner's worker threads stay
//! plain threads and every error keeps the distinction the client needs: did anything leave this
//! machine (`Sent`) or surely not (`NotSent`)?

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A response body larger than this is a protocol error (our values are small).
const MAX_BODY_BYTES: usize = 16 << 20;
/// Header lines longer than this, or more of them than `MAX_HEADER_LINES`, are a protocol error.
const MAX_HEADER_LINE_BYTES: usize = 8 << 10;
const MAX_HEADER_LINES: usize = 100;

/// Why a request has no response.
#[derive(Debug)]
pub enum HttpError {
    /// Nothing of the request left this process (connect failed or timed out): it surely did not
    /// take effect.
    NotSent(String),
    /// The request may have reached the server (send, timeout or read error after writing).
    Sent(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::NotSent(e) => write!(f, "not sent: {e}"),
            HttpError::Sent(e) => write!(f, "{e}"),
        }
    }
}

/// One keep-alive connection to one member.
pub struct HttpConnection {
    pub address: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn io_kind(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timeout",
        std::io::ErrorKind::ConnectionRefused => "connection refused",
        std::io::ErrorKind::ConnectionReset => "connection reset",
        std::io::ErrorKind::UnexpectedEof => "connection closed",
        std::io::ErrorKind::BrokenPipe => "broken pipe",
        _ => "io error",
    }
}

impl HttpConnection {
    pub fn new(address: SocketAddr) -> HttpConnection {
        HttpConnection { address, stream: None }
    }

    pub fn close(&mut self) {
        self.stream = None;
    }

    /// POSTs `body` to `path`; returns the HTTP status and the JSON body. Any error closes the
    /// connection.
    pub fn post_json(&mut self, path: &str, body: &Value, deadline: Instant) -> Result<(u16, Value), HttpError> {
        let result = self.post_inner(path, body, deadline);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn post_inner(&mut self, path: &str, body: &Value, deadline: Instant) -> Result<(u16, Value), HttpError> {
        if self.stream.is_none() {
            let timeout = remaining(deadline);
            if timeout.is_zero() {
                return Err(HttpError::NotSent("deadline before connecting".to_string()));
            }
            let stream = TcpStream::connect_timeout(&self.address, timeout)
                .map_err(|e| HttpError::NotSent(format!("connect {}: {}", self.address, io_kind(&e))))?;
            stream.set_nodelay(true).map_err(|e| HttpError::NotSent(e.to_string()))?;
            self.stream = Some(BufReader::new(stream));
        }
        let reader = self.stream.as_mut().expect("connected above");
        let payload = serde_json::to_vec(body).expect("a JSON value serialises");
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.address,
            payload.len()
        )
        .into_bytes();
        request.extend_from_slice(&payload);
        let timeout = remaining(deadline).max(Duration::from_millis(1));
        let stream = reader.get_mut();
        stream.set_write_timeout(Some(timeout)).map_err(|e| HttpError::Sent(e.to_string()))?;
        // From here on the request may have reached the server, even if the write reports an error.
        stream.write_all(&request).map_err(|e| HttpError::Sent(format!("send: {}", io_kind(&e))))?;
        read_response(reader, deadline).map_err(|e| HttpError::Sent(e.to_string()))
    }
}

fn read_line_bounded(reader: &mut BufReader<TcpStream>, deadline: Instant) -> std::io::Result<String> {
    let timeout = remaining(deadline);
    if timeout.is_zero() {
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"));
    }
    reader.get_mut().set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    let n = reader.by_ref().take(MAX_HEADER_LINE_BYTES as u64).read_line(&mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    if !line.ends_with('\n') {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "header line too long"));
    }
    Ok(line.trim_end().to_string())
}

fn read_exact_bounded(reader: &mut BufReader<TcpStream>, buffer: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buffer.len() {
        let timeout = remaining(deadline);
        if timeout.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"));
        }
        reader.get_mut().set_read_timeout(Some(timeout))?;
        match reader.read(&mut buffer[filled..])? {
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")),
            n => filled += n,
        }
    }
    Ok(())
}

fn read_response(reader: &mut BufReader<TcpStream>, deadline: Instant) -> std::io::Result<(u16, Value)> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let status_line = read_line_bounded(reader, deadline).map_err(|e| std::io::Error::new(e.kind(), io_kind(&e)))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut header_lines = 0;
    loop {
        let line = read_line_bounded(reader, deadline)?;
        if line.is_empty() {
            break;
        }
        header_lines += 1;
        if header_lines > MAX_HEADER_LINES {
            return Err(invalid("too many header lines".to_string()));
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            content_length = Some(value.parse().map_err(|_| invalid(format!("bad content-length {value}")))?);
        } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line_bounded(reader, deadline)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
            if body.len() + size > MAX_BODY_BYTES {
                return Err(invalid("response body too large".to_string()));
            }
            let start = body.len();
            body.resize(start + size, 0);
            if size == 0 {
                // The gateway sends trailers (Grpc-Trailer-*) after the last chunk: skip them.
                for _ in 0..MAX_HEADER_LINES {
                    if read_line_bounded(reader, deadline)?.is_empty() {
                        break;
                    }
                }
                break;
            }
            read_exact_bounded(reader, &mut body[start..], deadline)?;
            read_line_bounded(reader, deadline)?;
        }
    } else {
        let length = content_length.ok_or_else(|| invalid("no content-length".to_string()))?;
        if length > MAX_BODY_BYTES {
            return Err(invalid("response body too large".to_string()));
        }
        body.resize(length, 0);
        read_exact_bounded(reader, &mut body, deadline)?;
    }
    let json = serde_json::from_slice(&body).map_err(|e| invalid(format!("bad JSON body: {e}")))?;
    Ok((status, json))
}

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as protobuf's JSON mapping writes `bytes`.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64_ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard or URL-safe base64, padded or not; None on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        buffer = buffer << 6 | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn base64_round_trips_every_length() {
        assert_eq!(base64_encode(b"k1"), "azE=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        for length in 0..40 {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64_decode("a!"), None);
    }

    /// A fake server answering each request with `answer` (raw bytes), or staying silent when it
    /// is empty.
    fn fake_server(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream);
                'requests: loop {
                    let mut content_length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break 'requests;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            content_length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; content_length];
                    reader.read_exact(&mut body).unwrap();
                    if answer.is_empty() {
                        std::thread::sleep(Duration::from_secs(5));
                        return;
                    }
                    reader.get_mut().write_all(answer).unwrap();
                }
            }
        });
        address
    }

    #[test]
    fn content_length_and_chunked_responses_are_read_on_one_keep_alive_connection() {
        let plain = fake_server(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"a\":1}\n");
        let mut connection = HttpConnection::new(plain);
        for _ in 0..3 {
            let deadline = Instant::now() + Duration::from_secs(2);
            let (status, body) = connection.post_json("/v3/kv/range", &serde_json::json!({}), deadline).unwrap();
            assert_eq!((status, body["a"].as_u64()), (200, Some(1)));
        }
        let chunked = fake_server(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"err\r\n8\r\nor\":\"x\"}\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n",
        );
        let mut connection = HttpConnection::new(chunked);
        let deadline = Instant::now() + Duration::from_secs(2);
        let (status, body) = connection.post_json("/v3/kv/put", &serde_json::json!({}), deadline).unwrap();
        assert_eq!((status, body["error"].as_str()), (503, Some("x")));
    }

    #[test]
    fn a_refused_connect_is_not_sent_and_a_silent_server_is_sent() {
        // Port 1: nothing listens there (a dropped listener's port could be reused by a parallel test).
        let unused: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut connection = HttpConnection::new(unused);
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(matches!(connection.post_json("/x", &Value::Null, deadline), Err(HttpError::NotSent(_))));
        let silent = fake_server(b"");
        let mut connection = HttpConnection::new(silent);
        let deadline = Instant::now() + Duration::from_millis(300);
        assert!(matches!(connection.post_json("/x", &Value::Null, deadline), Err(HttpError::Sent(_))));
    }
}
