//! A minimal logger for the `ebb` binary: `[seconds LEVEL] message` lines on
//! stderr. Hand-written because a level and a timestamp are all the binary
//! needs; env_logger would add a dependency tree for filters nobody sets.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

use log::{Level, Log, Metadata, Record};

struct Stderr {
    start: Instant,
    level: Level,
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let t = self.start.elapsed().as_secs_f64();
            // One write per line, so lines from several threads do not mix.
            let line = format!("[{t:10.3} {:5}] {}\n", record.level(), record.args());
            // Nowhere to report a failing stderr.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
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
