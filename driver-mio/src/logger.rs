//! A minimal logger for the `ebb` binary: `[seconds LEVEL] message` lines on
//! stderr, and the access log's (target [`ebb_mio::ACCESS_LOG_TARGET`]) as
//! `access ts=… peer=… …`: logfmt, which carries its own time, marked by the
//! bare key `access` (`grep '^access '` selects them). Hand-written because
//! a level and a timestamp are all the binary needs; env_logger would add a
//! dependency tree for filters nobody sets.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Instant;

use ebb_mio::ACCESS_LOG_TARGET;
use log::{Level, Log, Metadata, Record};

/// Access-log lines gathered by one thread before they are written anyway:
/// some 25 lines, in a buffer small enough to stay in the cache.
const FLUSH_BYTES: usize = 4 * 1024;

struct Stderr {
    start: Instant,
    level: Level,
}

/// One thread's lines not yet written, in a buffer it reuses. Access-log
/// lines wait here until the worker flushes the logger (within 50 ms)
/// or `FLUSH_BYTES` have gathered, so a busy worker writes many in one
/// write; any other line is written at once, after those before it.
struct Pending(String);

impl Drop for Pending {
    fn drop(&mut self) {
        write_out(&mut self.0);
    }
}

thread_local! {
    static PENDING: RefCell<Pending> = const { RefCell::new(Pending(String::new())) };
}

/// Writes `buf` to stderr in one write, and empties it.
fn write_out(buf: &mut String) {
    if !buf.is_empty() {
        // Nowhere to report a failing stderr.
        let _ = std::io::stderr().lock().write_all(buf.as_bytes());
        buf.clear();
    }
}

impl Stderr {
    /// Appends `record` as one line. An access-log line (one per request)
    /// is the message alone, copied as it is.
    fn format(&self, buf: &mut String, record: &Record<'_>, access: bool) {
        if access {
            buf.push_str("access ");
        } else {
            self.push_prefix(buf, record.level());
        }
        match record.args().as_str() {
            Some(message) => buf.push_str(message),
            // Writing to a String cannot fail.
            None => {
                let _ = buf.write_fmt(*record.args());
            }
        }
        buf.push('\n');
    }

    /// Appends `[seconds LEVEL] `, the seconds since start-up to the
    /// millisecond.
    fn push_prefix(&self, buf: &mut String, level: Level) {
        let elapsed = self.start.elapsed();
        let (secs, millis) = (elapsed.as_secs(), elapsed.subsec_millis());
        // Writing to a String cannot fail.
        let _ = write!(buf, "[{secs:6}.{millis:03} {level:5}] ");
    }
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let access = record.target() == ACCESS_LOG_TARGET;
        let buffered = PENDING.try_with(|pending| {
            // Busy only if formatting a line logged another: that one goes
            // out on its own.
            let Ok(mut pending) = pending.try_borrow_mut() else {
                return false;
            };
            self.format(&mut pending.0, record, access);
            if !access || pending.0.len() >= FLUSH_BYTES {
                write_out(&mut pending.0);
            }
            true
        });
        if buffered != Ok(true) {
            let mut line = String::new();
            self.format(&mut line, record, access);
            write_out(&mut line);
        }
    }

    fn flush(&self) {
        let _ = PENDING.try_with(|pending| {
            if let Ok(mut pending) = pending.try_borrow_mut() {
                write_out(&mut pending.0);
            }
        });
    }
}

/// Installs the logger: info and above, debug with `verbosity` 1, trace with 2
/// or more. Does nothing if a logger is already installed.
pub fn init(verbosity: u8) {
    static LOGGER: OnceLock<Stderr> = OnceLock::new();
    let level = match verbosity {
        0 => Level::Info,
        1 => Level::Debug,
        _ => Level::Trace,
    };
    let logger = LOGGER.get_or_init(|| Stderr {
        start: Instant::now(),
        level,
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.level.to_level_filter());
    }
}
