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

    /// Stops reading its stderr while the guard lives: the reader takes
    /// this lock for every line, so the pipe fills, as behind a log reader
    /// that stalled. [`log`](Self::log) must not be called meanwhile.
    pub fn stall_log(&self) -> MutexGuard<'_, String> {
        self.log.lock().unwrap()
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
        self.wait_log_complete();
        assert!(
            status.success(),
            "ebb exited with {status}:\n{}",
            self.log()
        );
        at
    }

    /// Waits (up to 5 s) until its stderr has closed and every line of it is
    /// in [`log`](Self::log): after the exit, the last lines may still be on
    /// their way.
    fn wait_log_complete(&self) {
        let until = Instant::now() + Duration::from_secs(5);
        while !self.log_complete.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
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
    /// Waits up to `timeout` for the exit and checks its status is `code`,
    /// then waits for the rest of its log; when it exited.
    pub fn expect_exit_code(&self, timeout: Duration, code: i32) -> Instant {
        let Some((status, at)) = self.wait_exit(timeout) else {
            panic!("ebb still running after {timeout:?}:\n{}", self.log());
        };
        self.wait_log_complete();
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

/// Makes this test process the reaper of its orphaned descendants (Linux
/// `PR_SET_CHILD_SUBREAPER`): a hot upgrade's successor outlives the process
/// that started it, and is then this process's child, so the tests can wait
/// for it and read its exit status instead of leaving a zombie to whatever
/// init the machine has.
pub fn become_subreaper() {
    // SAFETY: prctl with these arguments only sets a flag of this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(
        rc,
        0,
        "PR_SET_CHILD_SUBREAPER: {}",
        io::Error::last_os_error()
    );
}

/// Sends `signal` to process `pid`; false if there is no such process.
pub fn kill(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Whether process `pid` has exited, looked at without reaping it (so an
/// [`Ebb`]'s own waiter still reaps its process): its exit code if it is a
/// child of this process that exited normally, `None` inside if it is not a
/// child or a signal ended it.
fn exited(pid: i32) -> Option<Option<i32>> {
    // SAFETY: waitid writes the siginfo it is given; WNOWAIT leaves the
    // child to be reaped later.
    unsafe {
        let mut info = std::mem::zeroed::<libc::siginfo_t>();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        if libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 {
            if info.si_pid() != pid {
                // A child of this process, still running.
                return None;
            }
            return Some((info.si_code == libc::CLD_EXITED).then(|| info.si_status()));
        }
    }
    // Not a child of this process (or reaped already).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => Some(None),
        // The state follows the parenthesised name.
        Ok(stat) => match stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
        {
            Some("Z" | "X") => Some(None),
            _ => None,
        },
    }
}

/// Waits up to `timeout` for process `pid` (not necessarily a child) to
/// exit: when, and its exit code if this process reaped it.
pub fn wait_gone(pid: i32, timeout: Duration) -> Option<(Option<i32>, Instant)> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(code) = exited(pid) {
            return Some((code, Instant::now()));
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The pid in a pid file, if it holds one.
pub fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits up to `timeout` for the pid file at `path` to name a process
/// other than `old`; the new pid.
pub fn wait_pid_file_change(path: &Path, old: Option<i32>, timeout: Duration) -> Option<i32> {
    let until = Instant::now() + timeout;
    loop {
        match read_pid_file(path) {
            Some(pid) if Some(pid) != old => return Some(pid),
            _ => {}
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Processes a test started indirectly (successors): killed with SIGKILL
/// when dropped if still running, so a failed test leaves none behind, and
/// reaped if they are this process's children by then.
#[derive(Default)]
pub struct Strays(pub Vec<i32>);

impl Drop for Strays {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if exited(pid).is_none() {
                kill(pid, libc::SIGKILL);
                let _ = wait_gone(pid, Duration::from_secs(5));
            }
            // SAFETY: waitpid on a pid this test started; fails harmlessly
            // if it is not a child of this process.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `ebb-<name>-<pid>-<n>`, created empty.
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("ebb-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    /// `name` inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shape of a [`Load`].
#[derive(Clone, Copy, Debug)]
pub struct LoadShape {
    /// Threads that each keep one connection alive for as long as the
    /// server lets them, alternating `GET /` and `POST /echo`.
    pub keep_alive_threads: usize,
    /// Threads that open a new connection for every request.
    pub new_connection_threads: usize,
}

/// Clients sending requests to one address until stopped, checking every
/// response and counting what failed.
///
/// A failure is any request that does not get its complete, correct
/// response: a refused or failed connect, a reset, a connection closed
/// after the request was written and before its response, a wrong status or
/// body. Not failures: a response with `Connection: close` (the client
/// reconnects), and a keep-alive connection the server closed cleanly while
/// it was idle, seen before anything was written on it (the client
/// reconnects and sends there).
pub struct Load {
    stop: Arc<AtomicBool>,
    completed: Arc<std::sync::atomic::AtomicU64>,
    stats: Arc<Mutex<LoadStats>>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

/// What a [`Load`] saw.
#[derive(Clone, Debug, Default)]
pub struct LoadStats {
    /// Requests answered correctly.
    pub completed: u64,
    /// Of those, `POST`s.
    pub posts: u64,
    /// Connections opened.
    pub connections: u64,
    /// Keep-alive connections ended by a `Connection: close` response.
    pub closed_by_response: u64,
    /// Keep-alive connections the server closed while idle, before a request.
    pub closed_while_idle: u64,
    /// Every failure: when (since the load started) and what.
    pub failures: Vec<String>,
}

impl Load {
    /// Starts the load on `addr`.
    pub fn start(addr: SocketAddr, shape: LoadShape) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let started = Instant::now();
        let mut threads = Vec::new();
        for number in 0..shape.keep_alive_threads + shape.new_connection_threads {
            let keep_alive = number < shape.keep_alive_threads;
            let mut client = LoadClient {
                addr,
                number,
                keep_alive,
                stop: stop.clone(),
                completed: completed.clone(),
                stats: stats.clone(),
                started,
                local: LoadStats::default(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("load-{number}"))
                    .spawn(move || client.run())
                    .expect("spawn a load thread"),
            );
        }
        Load {
            stop,
            completed,
            stats,
            threads,
            started,
        }
    }

    /// Requests answered correctly so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// How long it has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops every client (each finishes its request in flight) and returns
    /// what they saw.
    pub fn stop(mut self) -> LoadStats {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            thread.join().expect("a load thread panicked");
        }
        let stats = self.stats.lock().unwrap().clone();
        stats
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct LoadClient {
    addr: SocketAddr,
    number: usize,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    completed: Arc<std::sync::atomic::AtomicU64>,
    stats: Arc<Mutex<LoadStats>>,
    started: Instant,
    local: LoadStats,
}

/// Generous: a response late by this much on a shared machine is a failure.
const LOAD_IO_TIMEOUT: Duration = Duration::from_secs(15);

impl LoadClient {
    fn run(&mut self) {
        let mut conn: Option<Client> = None;
        let mut sequence = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let reused = conn.is_some();
            let client = match conn.as_mut() {
                Some(client) => client,
                None => match Client::connect(self.addr, LOAD_IO_TIMEOUT) {
                    Ok(client) => {
                        self.local.connections += 1;
                        conn.insert(client)
                    }
                    Err(e) => {
                        self.fail(format!("connect: {e}"));
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                },
            };
            if reused {
                match idle_state(&client.stream) {
                    Idle::Open => {}
                    Idle::ClosedCleanly => {
                        self.local.closed_while_idle += 1;
                        conn = None;
                        continue;
                    }
                    Idle::Broken(why) => {
                        self.fail(format!("idle keep-alive connection: {why}"));
                        conn = None;
                        continue;
                    }
                }
            }
            sequence += 1;
            let post = sequence & 1 == 0;
            let body = format!("client {} request {sequence}", self.number);
            let close = if self.keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            };
            let request = if post {
                format!(
                    "POST /echo HTTP/1.1\r\nHost: ebb\r\n{close}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            } else {
                format!("GET / HTTP/1.1\r\nHost: ebb\r\n{close}\r\n")
            };
            let what = if post { "POST /echo" } else { "GET /" };
            if let Err(e) = client.stream.write_all(request.as_bytes()) {
                self.fail(format!("{what} (reused {reused}): write: {e}"));
                conn = None;
                continue;
            }
            let response = match client.read_response() {
                Ok(response) => response,
                Err(e) => {
                    self.fail(format!("{what} (reused {reused}): read: {e}"));
                    conn = None;
                    continue;
                }
            };
            let expected: &[u8] = if post {
                body.as_bytes()
            } else {
                b"Hello, World!"
            };
            if response.status != 200 || response.body != expected {
                self.fail(format!(
                    "{what}: {} {:?}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ));
            } else {
                self.local.completed += 1;
                self.local.posts += u64::from(post);
                self.completed.fetch_add(1, Ordering::SeqCst);
            }
            if response.close || !self.keep_alive {
                if self.keep_alive {
                    self.local.closed_by_response += 1;
                }
                conn = None;
            }
        }
        let mut stats = self.stats.lock().unwrap();
        stats.completed += self.local.completed;
        stats.posts += self.local.posts;
        stats.connections += self.local.connections;
        stats.closed_by_response += self.local.closed_by_response;
        stats.closed_while_idle += self.local.closed_while_idle;
        stats.failures.append(&mut self.local.failures);
    }

    fn fail(&mut self, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        let line = format!("{at:.3}s client {}: {what}", self.number);
        eprintln!("load failure: {line}");
        self.local.failures.push(line);
    }
}

enum Idle {
    Open,
    ClosedCleanly,
    Broken(String),
}

/// Whether an idle keep-alive connection is still open, looked at without
/// waiting: a FIN shows as end of file, a reset as an error.
fn idle_state(stream: &TcpStream) -> Idle {
    if let Err(e) = stream.set_nonblocking(true) {
        return Idle::Broken(format!("set_nonblocking: {e}"));
    }
    let mut byte = [0; 1];
    let state = match stream.peek(&mut byte) {
        Ok(0) => Idle::ClosedCleanly,
        Ok(_) => Idle::Broken("bytes arrived unasked".to_owned()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Idle::Open,
        Err(e) => Idle::Broken(e.to_string()),
    };
    if let Err(e) = stream.set_nonblocking(false) {
        return Idle::Broken(format!("set_nonblocking: {e}"));
    }
    state
}
