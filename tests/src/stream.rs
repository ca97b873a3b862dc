//! Reading long streamed responses without holding them: a chunked body is
//! decoded as it arrives, each byte checked against the demo's pattern, and
//! a checksum kept; and the server's peak memory.

use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::Ebb;

/// The demo's `/stream` body: byte `i` is `PATTERN[i % 64]` (as
/// `demo::pattern` in the `ebb` binary).
pub const PATTERN: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n";

/// FNV-1a, 64 bits: a checksum cheap enough for a GiB.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Folds in `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The checksum of the first `len` bytes of the pattern.
    pub fn of_pattern(len: u64) -> Fnv {
        let mut fnv = Fnv::default();
        let mut left = len;
        while left > 0 {
            let n = left.min(PATTERN.len() as u64) as usize;
            fnv.update(&PATTERN[..n]);
            left -= n as u64;
        }
        fnv
    }
}

/// A chunked body as read: its bytes, whether its last chunk came (a body
/// cut by the server ends without it), and what the client saw.
#[derive(Debug)]
pub struct ChunkedBody {
    /// The response head, status line first.
    pub head: String,
    /// Body bytes received.
    pub bytes: u64,
    /// Whether the terminating zero-size chunk arrived.
    pub complete: bool,
    /// FNV-1a of the body bytes.
    pub checksum: Fnv,
    /// Whether every byte matched the pattern at its offset.
    pub is_pattern: bool,
    /// When the last body byte (or the last chunk) arrived.
    pub last_byte_at: Instant,
}

/// Reads one response with a chunked body from `stream`, checking it
/// against [`PATTERN`] and calling `on_data` with each piece; at most
/// `bytes_per_second` when given (a slow client). Stops at the last chunk or
/// at end of file, which leaves `complete` false.
pub fn read_chunked(
    stream: &TcpStream,
    bytes_per_second: Option<u64>,
    mut on_data: impl FnMut(&[u8]),
) -> io::Result<ChunkedBody> {
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not chunked:\n{head}"),
        ));
    }
    let started = Instant::now();
    let mut body = ChunkedBody {
        head,
        bytes: 0,
        complete: false,
        checksum: Fnv::default(),
        is_pattern: true,
        last_byte_at: Instant::now(),
    };
    let mut buf = vec![0; 64 << 10];
    // The pattern from any phase, to compare a whole piece at once.
    let expected: Vec<u8> = PATTERN
        .iter()
        .copied()
        .cycle()
        .take(buf.len() + PATTERN.len())
        .collect();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(body); // cut: no last chunk
        }
        let size_text = line.trim_end().split(';').next().unwrap_or_default();
        let size = u64::from_str_radix(size_text, 16).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("chunk size {line:?}: {e}"),
            )
        })?;
        if size == 0 {
            // Trailers (none expected), then the blank line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                    break;
                }
            }
            body.complete = true;
            body.last_byte_at = Instant::now();
            return Ok(body);
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                return Ok(body);
            }
            let piece = &buf[..n];
            if body.is_pattern {
                let phase = (body.bytes % PATTERN.len() as u64) as usize;
                body.is_pattern = piece == &expected[phase..phase + n];
            }
            body.checksum.update(piece);
            body.bytes += n as u64;
            body.last_byte_at = Instant::now();
            on_data(piece);
            left -= n as u64;
            if let Some(rate) = bytes_per_second {
                let due = started + Duration::from_secs_f64(body.bytes as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk not followed by CRLF",
            ));
        }
    }
}

impl Ebb {
    /// The process's peak resident set size so far (`VmHWM` in
    /// `/proc/<pid>/status`, Linux only), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("/proc/{}/status: {e}", self.pid));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmHWM line")
    }
}
