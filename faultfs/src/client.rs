//! The harness's side of the control socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::{Loss, ParseError, Reply, Request, Status, MAX_LINE_BYTES};

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("faultfs control socket {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("faultfs control socket {path}: closed before replying")]
    Closed { path: PathBuf },
    #[error("faultfs control socket {path}: {source}")]
    Parse { path: PathBuf, source: ParseError },
    /// The file system understood the request and refused or failed it.
    #[error("faultfs at {path} refused {request}: {message}")]
    Refused { path: PathBuf, request: String, message: String },
    #[error("faultfs control socket {path}: reply of the wrong kind to {request}: {reply}")]
    UnexpectedReply { path: PathBuf, request: String, reply: String },
}

/// A client of one file system's control socket. Each request opens its own connection, so a
/// client holds nothing between requests and a restarted file system needs no new client.
#[derive(Clone, Debug)]
pub struct ControlClient {
    path: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    /// `timeout` bounds each of connect, send and receive: a power loss over a large journal
    /// takes as long as rewriting what it saved.
    pub fn new(path: impl AsRef<Path>, timeout: Duration) -> Self {
        ControlClient { path: path.as_ref().to_path_buf(), timeout }
    }

    /// Sends one request and returns its reply (an `err` reply is `Ok(Reply::Error)`).
    pub fn request(&self, request: Request) -> Result<Reply, ClientError> {
        let io = |source| ClientError::Io { path: self.path.clone(), source };
        let mut stream = UnixStream::connect(&self.path).map_err(io)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        stream.write_all(format!("{request}\n").as_bytes()).map_err(io)?;
        let mut line = String::new();
        BufReader::new(stream.take(MAX_LINE_BYTES as u64)).read_line(&mut line).map_err(io)?;
        if !line.ends_with('\n') {
            return Err(ClientError::Closed { path: self.path.clone() });
        }
        Reply::parse(line.trim_end()).map_err(|source| ClientError::Parse { path: self.path.clone(), source })
    }

    fn expect<T>(&self, request: Request, pick: impl FnOnce(Reply) -> Result<T, Reply>) -> Result<T, ClientError> {
        match pick(self.request(request)?) {
            Ok(value) => Ok(value),
            Err(Reply::Error(message)) => {
                Err(ClientError::Refused { path: self.path.clone(), request: request.to_string(), message })
            }
            Err(reply) => Err(ClientError::UnexpectedReply {
                path: self.path.clone(),
                request: request.to_string(),
                reply: reply.to_string(),
            }),
        }
    }

    pub fn status(&self) -> Result<Status, ClientError> {
        self.expect(Request::Status, |r| match r {
            Reply::Status(s) => Ok(s),
            other => Err(other),
        })
    }

    /// Power loss. Kill the program using the mount first: its open files survive the loss.
    pub fn lose_unfsynced(&self) -> Result<Loss, ClientError> {
        self.expect(Request::LoseUnfsynced, |r| match r {
            Reply::Lost(l) => Ok(l),
            other => Err(other),
        })
    }

    /// Power loss that keeps a prefix of the last un-fsynced write.
    pub fn torn_write(&self, seed: u64) -> Result<Loss, ClientError> {
        self.expect(Request::TornWrite { seed }, |r| match r {
            Reply::Lost(l) => Ok(l),
            other => Err(other),
        })
    }
}
