//! The HTTP/1.1 client for etcd's v3 JSON gateway, on `ureq`: `POST` a JSON body on a keep-alive
//! connection, read one response, everything bounded by a deadline. Blocking, so the runner's
//! worker threads stay plain threads, and every error keeps the distinction the client needs: did
//! anything leave this machine (`Sent`) or surely not (`NotSent`)? That is decided where it is
//! known: an error of the connector (no connection, so no byte of this request was written) is
//! `NotSent`; any other error, including the deadline passing, is `Sent`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{ConnectionDetails, Connector, TcpConnector};

/// A response body larger than this is a protocol error (our values are small).
const MAX_BODY_BYTES: u64 = 16 << 20;

/// Why a request has no response.
#[derive(Debug)]
pub enum HttpError {
    /// Nothing of the request left this process (connect failed or timed out): it surely did not
    /// take effect.
    NotSent(String),
    /// The request may have reached the server (send, timeout or read error after connecting).
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

/// A failure to open a connection, marked so that it can be told apart from every later error.
#[derive(Debug)]
struct ConnectFailed(ureq::Error);

impl std::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for ConnectFailed {}

/// Plain TCP, with every error of connecting wrapped in `ConnectFailed`. ureq only calls the
/// connector for a new connection, before it writes anything, and passes its error through.
#[derive(Debug, Default)]
struct MarkedTcpConnector(TcpConnector);

impl Connector<()> for MarkedTcpConnector {
    type Out = <TcpConnector as Connector<()>>::Out;

    fn connect(&self, details: &ConnectionDetails, chained: Option<()>) -> Result<Option<Self::Out>, ureq::Error> {
        self.0.connect(details, chained).map_err(|e| ureq::Error::Other(Box::new(ConnectFailed(e))))
    }
}

fn new_agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        // A gateway's 4xx/5xx carries a JSON body the client reads (e.g. "etcdserver: request
        // timed out"): a response, not an error.
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections_per_host(1)
        .build();
    ureq::Agent::with_parts(config, MarkedTcpConnector::default(), DefaultResolver::default())
}

/// Sent or not sent, from where ureq's error came from.
fn classify(error: ureq::Error) -> HttpError {
    match error {
        ureq::Error::Other(inner) => match inner.downcast::<ConnectFailed>() {
            Ok(connect) => HttpError::NotSent(format!("connect: {}", describe(&connect.0))),
            Err(other) => HttpError::Sent(other.to_string()),
        },
        other => HttpError::Sent(describe(&other)),
    }
}

/// A short description for the history's `error` field.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timeout".to_string(),
        ureq::Error::Io(e) => match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timeout".to_string(),
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
            std::io::ErrorKind::UnexpectedEof => "connection closed".to_string(),
            std::io::ErrorKind::BrokenPipe => "broken pipe".to_string(),
            _ => format!("io error: {e}"),
        },
        other => other.to_string(),
    }
}

/// One keep-alive connection to one member.
pub struct HttpConnection {
    pub address: SocketAddr,
    agent: ureq::Agent,
}

impl HttpConnection {
    pub fn new(address: SocketAddr) -> HttpConnection {
        HttpConnection { address, agent: new_agent() }
    }

    /// Drops the kept-alive connection (the next request connects anew).
    pub fn close(&mut self) {
        self.agent = new_agent();
    }

    /// POSTs `body` to `path`; returns the HTTP status and the JSON body. Any error closes the
    /// connection.
    pub fn post_json(&mut self, path: &str, body: &Value, deadline: Instant) -> Result<(u16, Value), HttpError> {
        let result = self.post_inner(path, body, deadline);
        if result.is_err() {
            self.close();
        }
        result
    }

    fn post_inner(&mut self, path: &str, body: &Value, deadline: Instant) -> Result<(u16, Value), HttpError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(HttpError::NotSent("deadline before connecting".to_string()));
        }
        let payload = serde_json::to_vec(body).expect("a JSON value serialises");
        let mut response = self
            .agent
            .post(format!("http://{}{path}", self.address))
            .header("Content-Type", "application/json")
            .config()
            .timeout_global(Some(timeout.max(Duration::from_millis(1))))
            .build()
            .send(&payload[..])
            .map_err(classify)?;
        let status = response.status().as_u16();
        let bytes = response.body_mut().with_config().limit(MAX_BODY_BYTES).read_to_vec().map_err(classify)?;
        let json = serde_json::from_slice(&bytes).map_err(|e| HttpError::Sent(format!("bad JSON body: {e}")))?;
        Ok((status, json))
    }
}

/// Standard base64 with padding, as protobuf's JSON mapping writes `bytes`.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, padded or not; None on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let indifferent = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&base64::alphabet::STANDARD, indifferent)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, indifferent).decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
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
        // etcd writes padded standard base64; unpadded and URL-safe text decode too.
        assert_eq!(base64_decode("azE").unwrap(), b"k1");
        assert_eq!(base64_decode("-_8=").unwrap(), base64_decode("+/8=").unwrap());
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
