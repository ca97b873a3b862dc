//! Helpers shared by the end-to-end tests: start the real `ebb` binary, send
//! it signals, watch its log and its exit, and talk HTTP/1.1 to it over
//! loopback.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ebb_testkit::response::ResponseParser;

pub mod stream;

/// The `ebb` binary next to the test binary's profile directory
/// (`target/<profile>/ebb`), built with `$CARGO` when it is missing or older
/// than the sources of ebb-mio and ebb-core (`cargo test -p ebb-tests` alone
/// does not build other packages' binaries).
pub fn ebb_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps/<test>");
        let path = profile_dir.join(format!("ebb{}", std::env::consts::EXE_SUFFIX));
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sources =
            newest_mtime(&workspace.join("driver-mio")).max(newest_mtime(&workspace.join("core")));
        let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let stale = match built {
            None => true,
            Some(built) => sources.is_some_and(|s| s > built),
        };
        if stale {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            build.args(["build", "-p", "ebb-mio", "--bin", "ebb"]);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build");
            assert!(status.success(), "cargo build -p ebb-mio --bin ebb failed");
        }
        path
    })
    .clone()
}

/// The newest modification time of the files under `dir`, skipping `target`.
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// End-to-end tests measure real time on a shared machine: they run one at a
/// time, never against each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `ebb` process.
pub struct Ebb {
    pid: i32,
    /// The address it listens on, from its log (port 0 from
    /// [`launch`](Self::launch), which does not wait for it).
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// Set when its stderr has closed: the log is complete.
    log_complete: Arc<AtomicBool>,
    exit: Arc<Mutex<Option<(ExitStatus, Instant)>>>,
    waiter: Option<JoinHandle<()>>,
}

impl Ebb {
    /// Starts `ebb` with `args` (plus `--bind 127.0.0.1:0` unless `args`
    /// binds) and waits for its "listening" line.
    pub fn start(args: &[&str]) -> Ebb {
        let mut ebb = Ebb::launch(args);
        ebb.wait_listening();
        ebb
    }

    /// Starts `ebb` like [`start`](Self::start) but returns at once, without
    /// waiting for it to listen: for signals at any moment of its start-up.
    pub fn launch(args: &[&str]) -> Ebb {
        let mut command = Command::new(ebb_binary());
        if !args.contains(&"--bind") {
            command.args(["--bind", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .env_remove("PORT")
            .env_remove("SHUTDOWN_TIMEOUT_S")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID");
        Ebb::run(command)
    }

    /// Runs `command` (which starts `ebb`), capturing its log, and waits for
    /// its "listening" line.
    pub fn spawn(command: Command) -> Ebb {
        let mut ebb = Ebb::run(command);
        ebb.wait_listening();
        ebb
    }

    /// Runs `command`, capturing its log and watching for its exit.
    fn run(mut command: Command) -> Ebb {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ebb");
        let pid = child.id() as i32;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        let log_complete = Arc::new(AtomicBool::new(false));
        let complete = log_complete.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("ebb[{pid}] {line}");
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            complete.store(true, Ordering::SeqCst);
        });
        // A blocking wait in its own thread sees the exit the moment it happens.
        let exit = Arc::new(Mutex::new(None));
        let slot = exit.clone();
        let waiter = std::thread::spawn(move || {
            let status = child.wait().expect("wait for ebb");
            *slot.lock().unwrap() = Some((status, Instant::now()));
        });
        Ebb {
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            log_complete,
            exit,
            waiter: Some(waiter),
        }
    }

    /// Waits for the "listening" line and takes the address from it.
    fn wait_listening(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(addr) = listening_addr(&self.log()) {
                self.addr = addr;
                return;
            }
            assert!(
                self.exit().is_none(),
                "ebb exited at start:\n{}",
                self.log()
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "ebb did not log its address:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the process catches `signal` now: a handler is installed
    /// (bit `signal - 1` of `SigCgt` in `/proc/<pid>/status`; Linux only).
    pub fn catches(&self, signal: i32) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("/proc/{}/status: {e}", self.pid));
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .expect("a SigCgt line");
        caught & (1 << (signal - 1)) != 0
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({}, {signal}): {}",
            self.pid,
            io::Error::last_os_error()
        );
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Its exit status and when it exited, if it has.
    pub fn exit(&self) -> Option<(ExitStatus, Instant)> {
        *self.exit.lock().unwrap()
    }

    /// Waits up to `timeout` for the exit; its status and instant.
    pub fn wait_exit(&self, timeout: Duration) -> Option<(ExitStatus, Instant)> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.exit() {
                return Some(exit);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for a clean exit (status 0) within `timeout`, then for the rest
    /// of its log; when it exited.
    pub fn expect_clean_exit(&self, timeout: Duration) -> Instant {
        let Some((status, at)) = self.wait_exit(timeout) else {
            panic!("ebb still running after {timeout:?}:\n{}", self.log());
        };
        let until = Instant::now() + Duration::from_secs(5);
        while !self.log_complete.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            status.success(),
            "ebb exited with {status}:\n{}",
            self.log()
        );
        at
    }

    /// Waits up to `timeout` for a log line containing `text`; whether it came.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.log().contains(text) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for Ebb {
    fn drop(&mut self) {
        if self.exit().is_none() {
            // SAFETY: as in `signal`.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.join();
        }
    }
}

fn listening_addr(log: &str) -> Option<SocketAddr> {
    let rest = &log[log.find("ebb listening on ")? + "ebb listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A response as the test client read it: the kit's, so the end-to-end tests
/// read the binary's output with the same parser as every other test.
pub use ebb_testkit::response::Response;

/// A minimal HTTP/1.1 client for one connection (no pipelining).
pub struct Client {
    /// The connection.
    pub stream: TcpStream,
    parser: ResponseParser,
    /// Responses read and not yet returned, oldest first.
    ready: Vec<Response>,
}

impl Client {
    /// Connects, with `timeout` for reads and writes.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            parser: ResponseParser::new(),
            ready: Vec::new(),
        })
    }

    /// Sends `GET path` (keep-alive).
    pub fn send_get(&mut self, path: &str) -> io::Result<()> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: ebb\r\n\r\n");
        self.stream.write_all(request.as_bytes())
    }

    /// Sends `GET path` and reads the response.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send_get(path)?;
        self.read_response()
    }

    /// Reads the next response (an interim `1xx` too), however its body is
    /// framed; one that is not well-formed HTTP/1.1 is `InvalidData`, a
    /// close before it is complete `UnexpectedEof`.
    pub fn read_response(&mut self) -> io::Result<Response> {
        while self.ready.is_empty() {
            let mut chunk = [0; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                // A body delimited by the close ends here; any other is cut.
                self.parser
                    .finish(&mut self.ready)
                    .map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e))?;
                if self.ready.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    ));
                }
            } else {
                self.parser
                    .feed(&chunk[..n], &mut self.ready)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
        }
        Ok(self.ready.remove(0))
    }

    /// Reads until EOF, discarding; fails on a reset or a timeout.
    pub fn read_to_eof(&mut self) -> io::Result<()> {
        let mut sink = [0; 4096];
        loop {
            if self.stream.read(&mut sink)? == 0 {
                return Ok(());
            }
        }
    }

    /// Closes the connection with a reset (SO_LINGER 0), not a FIN.
    pub fn reset(self) {
        let socket = socket2::Socket::from(self.stream);
        socket.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
    }
}

impl Ebb {
    /// Waits up to `timeout` for the exit and checks its status is `code`;
    /// when it exited.
    pub fn expect_exit_code(&self, timeout: Duration, code: i32) -> Instant {
        let Some((status, at)) = self.wait_exit(timeout) else {
            panic!("ebb still running after {timeout:?}:\n{}", self.log());
        };
        assert_eq!(status.code(), Some(code), "{status}:\n{}", self.log());
        at
    }
}

/// Example `name` of ebb-mio (`target/<profile>/examples/<name>`), built with
/// `$CARGO` first; cargo does nothing when it is up to date.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "ebb-mio", "--example", name]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build --example {name} failed");
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    profile_dir.join("examples").join(file)
}

impl Ebb {
    /// Its process id, for what `/proc` says about it (its open descriptors).
    pub fn pid(&self) -> i32 {
        self.pid
    }
}
