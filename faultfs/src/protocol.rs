//! The control socket's line protocol (documented in `docs/faultfs.md`): one request per line,
//! one reply line each, ASCII words and `key=value` pairs. Both sides go through these types.

use std::fmt;

/// Longest line either side reads; a longer one is an error, never buffered.
pub const MAX_LINE_BYTES: usize = 4096;

/// What the harness asks of the file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// How much volatile state the file system holds.
    Status,
    /// Power loss: everything written since its last fsync is gone.
    LoseUnfsynced,
    /// Power loss in which the last un-fsynced write survives as a prefix of itself, of a
    /// length drawn from `seed` and always shorter than the write.
    TornWrite { seed: u64 },
}

/// Volatile state held, from `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub dirty_files: u64,
    pub dirty_dirs: u64,
    pub saved_bytes: u64,
}

/// What a power loss threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    pub files_reverted: u64,
    pub entries_reverted: u64,
    pub objects_deleted: u64,
    /// For `torn-write`: (bytes of the write, bytes kept), when there was a write to tear and
    /// its file survived.
    pub torn: Option<(u64, u64)>,
}

/// The file system's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Status(Status),
    Lost(Loss),
    /// The request was not understood or could not be carried out; the message says why.
    Error(String),
}

/// A line that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad control line {line:?}: {why}")]
pub struct ParseError {
    pub line: String,
    pub why: &'static str,
}

fn bad(line: &str, why: &'static str) -> ParseError {
    ParseError { line: line.chars().take(200).collect(), why }
}

/// `key=value` pairs after the leading words.
fn pairs<'a>(line: &str, words: impl Iterator<Item = &'a str>) -> Result<Vec<(&'a str, u64)>, ParseError> {
    words
        .map(|w| {
            let (k, v) = w.split_once('=').ok_or_else(|| bad(line, "expected key=value"))?;
            let v = v.parse().map_err(|_| bad(line, "value is not an unsigned integer"))?;
            Ok((k, v))
        })
        .collect()
}

fn field(line: &str, pairs: &[(&str, u64)], key: &str) -> Result<u64, ParseError> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).ok_or_else(|| bad(line, "missing field"))
}

impl Request {
    pub fn parse(line: &str) -> Result<Request, ParseError> {
        let mut words = line.split_ascii_whitespace();
        let verb = words.next().ok_or_else(|| bad(line, "empty line"))?;
        let args = pairs(line, words)?;
        let request = match verb {
            "status" => Request::Status,
            "lose-unfsynced" => Request::LoseUnfsynced,
            "torn-write" => Request::TornWrite { seed: args.iter().find(|(k, _)| *k == "seed").map_or(0, |(_, v)| *v) },
            _ => return Err(bad(line, "unknown command")),
        };
        let allowed: &[&str] = if verb == "torn-write" { &["seed"] } else { &[] };
        if args.iter().any(|(k, _)| !allowed.contains(k)) {
            return Err(bad(line, "unknown argument"));
        }
        Ok(request)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Status => write!(f, "status"),
            Request::LoseUnfsynced => write!(f, "lose-unfsynced"),
            Request::TornWrite { seed } => write!(f, "torn-write seed={seed}"),
        }
    }
}

impl Reply {
    pub fn parse(line: &str) -> Result<Reply, ParseError> {
        if let Some(message) = line.strip_prefix("err ") {
            return Ok(Reply::Error(message.to_string()));
        }
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("ok") {
            return Err(bad(line, "reply is neither ok nor err"));
        }
        let kind = words.next().ok_or_else(|| bad(line, "reply without a kind"))?;
        let p = pairs(line, words)?;
        match kind {
            "status" => Ok(Reply::Status(Status {
                dirty_files: field(line, &p, "dirty-files")?,
                dirty_dirs: field(line, &p, "dirty-dirs")?,
                saved_bytes: field(line, &p, "saved-bytes")?,
            })),
            "lost" => {
                let torn = match (field(line, &p, "torn-len"), field(line, &p, "torn-kept")) {
                    (Ok(len), Ok(kept)) => Some((len, kept)),
                    _ => None,
                };
                Ok(Reply::Lost(Loss {
                    files_reverted: field(line, &p, "files-reverted")?,
                    entries_reverted: field(line, &p, "entries-reverted")?,
                    objects_deleted: field(line, &p, "objects-deleted")?,
                    torn,
                }))
            }
            _ => Err(bad(line, "unknown reply kind")),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(
                f,
                "ok status dirty-files={} dirty-dirs={} saved-bytes={}",
                s.dirty_files, s.dirty_dirs, s.saved_bytes
            ),
            Reply::Lost(l) => {
                write!(
                    f,
                    "ok lost files-reverted={} entries-reverted={} objects-deleted={}",
                    l.files_reverted, l.entries_reverted, l.objects_deleted
                )?;
                if let Some((len, kept)) = l.torn {
                    write!(f, " torn-len={len} torn-kept={kept}")?;
                }
                Ok(())
            }
            // One line: a message never carries a newline.
            Reply::Error(message) => write!(f, "err {}", message.replace(['\n', '\r'], " ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        for r in [Request::Status, Request::LoseUnfsynced, Request::TornWrite { seed: 7 }] {
            assert_eq!(Request::parse(&r.to_string()), Ok(r));
        }
        let replies = [
            Reply::Status(Status { dirty_files: 1, dirty_dirs: 2, saved_bytes: 3 }),
            Reply::Lost(Loss { files_reverted: 1, entries_reverted: 2, objects_deleted: 3, torn: None }),
            Reply::Lost(Loss { files_reverted: 1, entries_reverted: 0, objects_deleted: 0, torn: Some((10, 4)) }),
            Reply::Error("no such thing".into()),
        ];
        for r in replies {
            assert_eq!(Reply::parse(&r.to_string()), Ok(r));
        }
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        assert_eq!(Request::parse("").unwrap_err().why, "empty line");
        assert_eq!(Request::parse("format-disk").unwrap_err().why, "unknown command");
        assert_eq!(Request::parse("status now=1").unwrap_err().why, "unknown argument");
        assert_eq!(Request::parse("torn-write seed=x").unwrap_err().why, "value is not an unsigned integer");
        assert_eq!(Request::parse("torn-write"), Ok(Request::TornWrite { seed: 0 }));
    }
}
