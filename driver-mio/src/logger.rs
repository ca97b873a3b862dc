//! A minimal logger for the `ebb` binary: `[seconds LEVEL] message` lines on
//! stderr, and the access log's (target [`ebb_mio::ACCESS_LOG_TARGET`]) as
//! `access ts=… peer=… …`: logfmt, which carries its own time, marked by the
//! bare key `access` (`grep '^access '` selects them). Hand-written because
//! a level and a timestamp are all the binary needs; env_logger would add a
//! dependency tree for filters nobody sets.
//!
//! Lines reach stderr through a thread of their own (`ebb-log`): a stderr
//! that stops taking them — a pipe whose reader paused, a terminal held
//! with Ctrl-S, a stuck log shipper — blocks that thread alone. Workers
//! and the signal handling never wait on it: they queue their lines, and
//! once [`QUEUE_BYTES`] wait unwritten, further lines are dropped and
//! counted, and the count is written where they would have been. At exit,
//! what is queued has [`EXIT_FLUSH`] to be written ([`finish`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

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

/// Lines queued and not yet written beyond which further lines are
/// dropped: a stalled stderr holds at most this much of the process's
/// memory.
const QUEUE_BYTES: usize = 1 << 20;

/// How long [`finish`] waits for the queued lines to be written: ample for
/// a stderr that takes them, and a bound on the exit behind one that does
/// not.
const EXIT_FLUSH: Duration = Duration::from_secs(2);

/// Emptied buffers kept for the threads' pending lines to reuse (so that a
/// flush allocates nothing), and the largest kept.
const SPARES: usize = 16;
const SPARE_CAPACITY: usize = 4 * FLUSH_BYTES;

/// The writing thread's queue, once [`init`] started it.
static WRITER: OnceLock<&'static Writer> = OnceLock::new();

/// Queues `buf` for stderr (or, before the writing thread runs, writes it
/// in one write), and empties it.
fn write_out(buf: &mut String) {
    if buf.is_empty() {
        return;
    }
    match WRITER.get() {
        Some(writer) => writer.queue(buf),
        None => {
            // Nowhere to report a failing stderr.
            let _ = std::io::stderr().lock().write_all(buf.as_bytes());
            buf.clear();
        }
    }
}

/// What waits to be written, in order.
enum Chunk {
    /// Whole lines.
    Lines(String),
    /// How many lines were dropped here, the queue being full.
    Dropped(u64),
}

/// The lines queued for the writing thread.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes in `chunks`, the one being written among them.
    bytes: usize,
    /// The writing thread holds a chunk it has not finished writing (when
    /// false, it waits for one, or is about to).
    writing: bool,
    spare: Vec<String>,
}

/// The lines on their way to stderr, and the thread that writes them.
struct Writer {
    queue: Mutex<Queue>,
    /// Signalled when a chunk is queued.
    queued: Condvar,
    /// Signalled when the queue is empty and nothing is being written.
    idle: Condvar,
    start: Instant,
}

impl Writer {
    fn new(start: Instant) -> Writer {
        Writer {
            queue: Mutex::default(),
            queued: Condvar::new(),
            idle: Condvar::new(),
            start,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `buf`'s lines — or, with [`QUEUE_BYTES`] waiting, counts them
    /// dropped — and empties it. Never waits on stderr.
    fn queue(&self, buf: &mut String) {
        let mut queue = self.lock();
        if queue.bytes + buf.len() > QUEUE_BYTES {
            let lines = buf.bytes().filter(|&b| b == b'\n').count() as u64;
            buf.clear();
            match queue.chunks.back_mut() {
                Some(Chunk::Dropped(n)) => *n += lines,
                _ => queue.chunks.push_back(Chunk::Dropped(lines)),
            }
            return;
        }
        let spare = queue.spare.pop().unwrap_or_default();
        let lines = std::mem::replace(buf, spare);
        queue.bytes += lines.len();
        queue.chunks.push_back(Chunk::Lines(lines));
        // A writer busy writing takes the next chunk without a wake-up (a
        // system call saved per batch of lines).
        let waiting = !queue.writing;
        drop(queue);
        if waiting {
            self.queued.notify_one();
        }
    }

    /// Writes what is queued to `out`, in order, forever.
    fn run(&self, mut out: impl std::io::Write) {
        let mut queue = self.lock();
        loop {
            let Some(chunk) = queue.chunks.pop_front() else {
                queue.writing = false;
                self.idle.notify_all();
                queue = self.queued.wait(queue).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            queue.writing = true;
            drop(queue);
            // Nowhere to report a failing stderr.
            match &chunk {
                Chunk::Lines(lines) => {
                    let _ = out.write_all(lines.as_bytes());
                }
                Chunk::Dropped(n) => {
                    let mut line = String::new();
                    push_prefix(&mut line, self.start, Level::Warn);
                    let _ = writeln!(line, "{n} log lines dropped: stderr did not take them");
                    let _ = out.write_all(line.as_bytes());
                }
            }
            queue = self.lock();
            if let Chunk::Lines(mut lines) = chunk {
                queue.bytes -= lines.len();
                if queue.spare.len() < SPARES && lines.capacity() <= SPARE_CAPACITY {
                    lines.clear();
                    queue.spare.push(lines);
                }
            }
        }
    }

    /// Waits until everything queued is written, or `timeout` has passed.
    fn drain(&self, timeout: Duration) {
        let until = Instant::now() + timeout;
        let mut queue = self.lock();
        while !queue.chunks.is_empty() || queue.writing {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            queue = self
                .idle
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Stderr {
    /// Appends `record` as one line. An access-log line (one per request)
    /// is the message alone, copied as it is.
    fn format(&self, buf: &mut String, record: &Record<'_>, access: bool) {
        if access {
            buf.push_str("access ");
        } else {
            push_prefix(buf, self.start, record.level());
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
}

/// Appends `[seconds LEVEL] `, the seconds since `start` to the
/// millisecond.
fn push_prefix(buf: &mut String, start: Instant, level: Level) {
    let elapsed = start.elapsed();
    let (secs, millis) = (elapsed.as_secs(), elapsed.subsec_millis());
    // Writing to a String cannot fail.
    let _ = write!(buf, "[{secs:6}.{millis:03} {level:5}] ");
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
/// or more; and starts the thread that writes its lines (without it, lines
/// are written by the thread that logs them). Does nothing if a logger is
/// already installed.
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
    if log::set_logger(logger).is_err() {
        return;
    }
    log::set_max_level(logger.level.to_level_filter());
    // Lives as long as the process, as the thread does.
    let writer: &'static Writer = Box::leak(Box::new(Writer::new(logger.start)));
    match std::thread::Builder::new()
        .name("ebb-log".into())
        .spawn(|| writer.run(std::io::stderr()))
    {
        Ok(_) => {
            let _ = WRITER.set(writer);
        }
        Err(e) => log::warn!("no log thread ({e}): lines are written as they are logged"),
    }
}

/// Writes this thread's pending lines, and waits (up to [`EXIT_FLUSH`])
/// until every line queued is written: for the process's last moments.
pub fn finish() {
    log::logger().flush();
    if let Some(writer) = WRITER.get() {
        writer.drain(EXIT_FLUSH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// An output that takes nothing until it is opened, as a pipe whose
    /// reader has stalled.
    #[derive(Clone, Default)]
    struct Gated {
        open: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Gated {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn written(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, opened) = &*self.open;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A writer writing to `out` on a thread of its own, for the test's life.
    fn writer(out: Gated) -> &'static Writer {
        let writer: &'static Writer = Box::leak(Box::new(Writer::new(Instant::now())));
        std::thread::spawn(move || writer.run(out));
        writer
    }

    #[test]
    fn a_stalled_output_holds_up_nobody_and_what_it_missed_is_counted() {
        let out = Gated::default();
        let writer = writer(out.clone());
        let line = |i: usize| format!("{i:0999}\n");
        // The first line is taken and stalls the writer; the queue then
        // fills to its bound, and every line past it is dropped.
        let fit = QUEUE_BYTES / 1000;
        for i in 0..fit + 5 {
            let mut buf = line(i);
            writer.queue(&mut buf);
            assert!(buf.is_empty());
        }
        let mut later = line(fit + 5);
        out.open();
        writer.drain(Duration::from_secs(10));
        writer.queue(&mut later);
        writer.drain(Duration::from_secs(10));
        let written = out.written();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), fit + 2, "{} lines", lines.len());
        for (i, l) in lines[..fit].iter().enumerate() {
            assert_eq!(*l, line(i).trim_end(), "in order");
        }
        assert!(
            lines[fit].ends_with("WARN ] 5 log lines dropped: stderr did not take them"),
            "{}",
            lines[fit]
        );
        assert_eq!(lines[fit + 1], line(fit + 5).trim_end(), "taken again");
    }

    #[test]
    fn the_exit_waits_for_a_stalled_output_no_longer_than_its_bound() {
        let out = Gated::default();
        let writer = writer(out.clone());
        writer.queue(&mut "a line\n".to_owned());
        let started = Instant::now();
        writer.drain(Duration::from_millis(50));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(out.written(), "");
    }
}
