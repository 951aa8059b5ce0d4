//! Reading a history file with bounds: no line longer than [`MAX_LINE_BYTES`], UTF-8 only, and
//! every refusal names its line.
//!
//! A history file is read twice: first streamed through a small buffer to check every line's
//! length and encoding (so a 1 GiB line is refused after reading 16 MiB of it, holding only the
//! buffer), then read whole for parsing, which is then known to be bounded per line. Reading twice
//! costs little next to parsing (the second read comes from the page cache), and it keeps the
//! parsers simple: they see a `&str` whose lines are all of sane length.

use std::io::Read;

use crate::error::{CheckError, InputError};

/// The longest line a history may have: 16 MiB. Jepsen's and our records are a few hundred
/// bytes; a whole EDN history written as one vector on one line is the one legitimate long line,
/// and 16 MiB holds about 100,000 ops of it.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Size of the buffer the first pass streams through.
const SCAN_BUFFER_BYTES: usize = 64 << 10;

/// Checks that every line of `reader` is at most `max_line_bytes` long and valid UTF-8.
/// `file` names the source in errors. Holds one buffer of 64 KiB, whatever the input.
pub fn scan_lines(mut reader: impl Read, file: &str, max_line_bytes: usize) -> Result<(), CheckError> {
    let mut buffer = vec![0u8; SCAN_BUFFER_BYTES];
    // Bytes of an incomplete UTF-8 sequence at the end of the previous chunk (at most 3).
    let mut carry: Vec<u8> = Vec::with_capacity(4);
    let mut line = 1usize;
    let mut line_bytes = 0usize;
    loop {
        let read = match reader.read(&mut buffer[carry.len()..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(CheckError::Io { path: file.to_string(), source }),
        };
        // The chunk to look at: the carried bytes, then what was just read.
        let start = carry.len();
        buffer[..start].copy_from_slice(&carry);
        let chunk = &buffer[..start + read];
        carry.clear();
        let valid = match std::str::from_utf8(chunk) {
            Ok(_) => chunk.len(),
            Err(e) if e.error_len().is_none() => {
                // A sequence cut by the chunk's end: finish it with the next chunk.
                carry.extend_from_slice(&chunk[e.valid_up_to()..]);
                e.valid_up_to()
            }
            Err(e) => {
                let at = e.valid_up_to();
                count_lines(&chunk[..at], &mut line, &mut line_bytes, max_line_bytes, file)?;
                return Err(InputError::at(
                    file,
                    line,
                    format!("not UTF-8: byte 0x{:02x} at column {}", chunk[at], line_bytes + 1),
                )
                .into());
            }
        };
        count_lines(&chunk[..valid], &mut line, &mut line_bytes, max_line_bytes, file)?;
    }
    if !carry.is_empty() {
        return Err(InputError::at(file, line, "not UTF-8: the file ends inside a multi-byte character").into());
    }
    Ok(())
}

fn count_lines(
    bytes: &[u8],
    line: &mut usize,
    line_bytes: &mut usize,
    max_line_bytes: usize,
    file: &str,
) -> Result<(), CheckError> {
    let mut rest = bytes;
    loop {
        let (segment, newline) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], true),
            None => (rest, false),
        };
        *line_bytes += segment.len();
        if *line_bytes > max_line_bytes {
            return Err(InputError::at(
                file,
                *line,
                format!("line longer than {} MiB; a history record is never that long", max_line_bytes >> 20),
            )
            .into());
        }
        if !newline {
            return Ok(());
        }
        *line += 1;
        *line_bytes = 0;
        rest = &rest[segment.len() + 1..];
    }
}

/// Reads a whole history file after [`scan_lines`] has accepted it.
pub fn read_to_string_bounded(path: &std::path::Path, max_line_bytes: usize) -> Result<String, CheckError> {
    let name = path.display().to_string();
    let io_error = |source| CheckError::Io { path: name.clone(), source };
    let file = std::fs::File::open(path).map_err(io_error)?;
    scan_lines(std::io::BufReader::with_capacity(SCAN_BUFFER_BYTES, file), &name, max_line_bytes)?;
    let bytes = std::fs::read(path).map_err(io_error)?;
    // The file may have changed between the two reads; check again rather than trust the scan.
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        InputError::at(&name, line, "not UTF-8 (the file changed while it was read)").into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(result: Result<(), CheckError>) -> (usize, String) {
        match result {
            Err(CheckError::Input(e)) => (e.line, e.message),
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    #[test]
    fn a_line_over_the_bound_is_refused_with_its_number() {
        let text = format!("short\n{}\nshort\n", "x".repeat(100));
        let (line, message) = line_of(scan_lines(text.as_bytes(), "h", 50));
        assert_eq!(line, 2);
        assert!(message.contains("line longer"), "{message}");
        assert!(scan_lines(text.as_bytes(), "h", 100).is_ok());
    }

    #[test]
    fn a_bad_byte_is_refused_with_its_line_and_column() {
        let mut bytes = b"{\"a\":1}\n{\"b\":2}\nab".to_vec();
        bytes.push(0xff);
        bytes.extend_from_slice(b"\n");
        let (line, message) = line_of(scan_lines(&bytes[..], "h", 1 << 20));
        assert_eq!(line, 3);
        assert!(message.contains("0xff") && message.contains("column 3"), "{message}");
    }

    /// A reader that hands out one byte at a time, so every multi-byte character is cut.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            match self.0.split_first() {
                Some((&b, rest)) if !out.is_empty() => {
                    out[0] = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn characters_cut_by_chunk_boundaries_are_accepted() {
        let text = "größe → ∞\n日本語\n";
        assert!(scan_lines(Trickle(text.as_bytes()), "h", 100).is_ok());
        // ... but a file that ends inside one is not.
        let cut = &text.as_bytes()[..text.len() - 2];
        let (line, _) = line_of(scan_lines(Trickle(cut), "h", 100));
        assert_eq!(line, 2);
    }

    #[test]
    fn a_long_line_in_a_big_stream_is_refused_without_reading_it_all() {
        // 64 MiB of one line, produced lazily: the scan must stop at the bound.
        let mut source = std::io::repeat(b'x').take(64 << 20);
        let (line, _) = line_of(scan_lines(&mut source, "h", 1 << 20));
        assert_eq!(line, 1);
        let left = source.limit();
        assert!(left > 60 << 20, "read {} bytes", (64 << 20) - left);
    }
}
