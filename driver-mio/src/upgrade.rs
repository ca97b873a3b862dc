//! Hot upgrade, the old process's side: start the successor with the
//! listening sockets, wait until it serves them, then hand them over.
//!
//! The successor is started as systemd starts a socket-activated service,
//! so one receive path serves both (`listener.rs`):
//!
//! - the listening sockets are descriptors 3, 4, … (one per distinct
//!   socket: workers sharing one socket pass it once, `reuse_port` workers
//!   pass each), named in `LISTEN_FDS` (their count), `LISTEN_FDNAMES`
//!   (`http:http:…`) and `LISTEN_PID` (the successor's own pid);
//! - the write end of a pipe is the next descriptor, named in
//!   `EBB_UPGRADE_READY_FD`. Once its workers poll the sockets the
//!   successor writes its pid and a newline there (after rewriting the pid
//!   file and sending `READY=1` to systemd) and closes it.
//!
//! `LISTEN_PID` must name the child, whose pid exists only after the fork.
//! Setting a variable there (`setenv`) may allocate, which is not safe
//! between fork and exec in a threaded process; so the whole environment is
//! built before the fork with a fixed-size slot for `LISTEN_PID`, and the
//! child fills in its pid (`getpid`, digits written into the slot), moves
//! the descriptors into place (`dup2`, which also clears close-on-exec on
//! the copy) and calls `execve` itself — only async-signal-safe calls.
//!
//! The old process hands over only once the successor says it serves: until
//! then both poll the sockets, and each accepts some of what is queued, so
//! nothing waits unserved. If the successor cannot start, exits, or is not
//! ready within the timeout, the old process keeps serving, logs why and
//! stops the successor (SIGTERM, SIGKILL after [`KILL_AFTER`]: a successor
//! that already serves drains what it took).

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::raw::c_char;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use mio::unix::pipe;
use mio::{Interest, Registry, Token};

use crate::listener::{inode, READY_FD_VAR};
use crate::notify::notify;
use crate::pidfile::PidFile;
use crate::shutdown::ShutdownHandle;

/// How long a failed successor has, after SIGTERM, before SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(10);
/// The default readiness timeout.
pub(crate) const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);
/// The name of each passed socket in `LISTEN_FDNAMES`.
const FD_NAME: &str = "http";

/// The successor's command: a program and its arguments.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    pub(crate) path: PathBuf,
    pub(crate) args: Vec<OsString>,
}

impl Program {
    /// This process again, with the same arguments. The path is argv[0] when
    /// it names a file (made absolute now, in the start-up directory), so a
    /// binary replaced at that path, or a symlink moved to a new release,
    /// is what the successor runs; else the path of the running executable,
    /// as resolved at start (`/proc/self/exe` later would name the old,
    /// replaced file).
    pub(crate) fn this_process() -> io::Result<Program> {
        let mut argv = std::env::args_os();
        let argv0 = argv.next().unwrap_or_default();
        let args: Vec<OsString> = argv.collect();
        let path = if argv0.as_bytes().contains(&b'/') {
            std::env::current_dir()?.join(argv0)
        } else {
            std::env::current_exe()?
        };
        Ok(Program { path, args })
    }

    /// Warns, at start, when the program could not be run now: a hot upgrade
    /// would fail unless it can be by then (a deploy may put it in place
    /// later, so this is no error).
    pub(crate) fn warn_unless_runnable(&self) {
        match self.resolve() {
            Ok(path) if is_executable(&path) => {}
            Ok(path) => log::warn!(
                "upgrade command {}: not an executable file now; a hot upgrade will fail unless it is one by then",
                path.display()
            ),
            Err(e) => log::warn!(
                "upgrade command: {e}; a hot upgrade will fail unless it is found by then"
            ),
        }
    }

    /// The executable to run: a bare name is looked up in `PATH` now.
    fn resolve(&self) -> io::Result<PathBuf> {
        if self.path.as_os_str().as_bytes().contains(&b'/') {
            return Ok(self.path.clone());
        }
        let search = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&search)
            .map(|dir| dir.join(&self.path))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} not found in PATH", self.path.display()),
                )
            })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A successor started and not yet ready.
struct Successor {
    child: Child,
    ready: pipe::Receiver,
    /// What it has written so far.
    said: Vec<u8>,
    started: Instant,
    /// How long it may take to be ready.
    timeout: Duration,
    /// When that runs out; `None` for a timeout too long for the clock,
    /// which never runs out.
    deadline: Option<Instant>,
}

/// Where a starting successor is.
enum Progress {
    /// Not ready yet: poll again on readiness of the pipe or at the deadline.
    Waiting,
    /// It serves: its pid (the one it wrote), and how long it took.
    Ready { pid: u32, after: Duration },
    /// It will not serve; why. It has been told to stop.
    Failed(String),
}

impl Successor {
    /// Starts `program` with the `sockets` (descriptor and inode of each
    /// listening socket to pass) as descriptors 3…, and registers the
    /// readiness pipe on `registry` under `token`.
    fn start(
        program: &Program,
        sockets: &[(RawFd, u64)],
        timeout: Duration,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Successor> {
        let path = program.resolve()?;
        let count = sockets.len() as RawFd;
        // Every source descriptor is moved above every target (3..=3+count)
        // first, so no dup2 overwrites a source still to be copied. The
        // copies are close-on-exec: what the child keeps is what dup2 puts
        // at the targets.
        let above = 3 + count + 1;
        let mut sources = Vec::with_capacity(sockets.len() + 1);
        for &(fd, expected) in sockets {
            let copy = dup_above(fd, above)?;
            // The worker owning `fd` may have closed it (a stop racing this
            // upgrade) and the number been reused: pass only the socket.
            if inode(copy.as_raw_fd())? != expected {
                return Err(io::Error::other(
                    "a listener was closed: the server is stopping",
                ));
            }
            sources.push(copy);
        }
        let (sender, mut receiver) = pipe::new()?;
        sources.push(dup_above(sender.as_raw_fd(), above)?);
        drop(sender);

        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(name, _)| {
                !matches!(
                    name.to_str(),
                    Some("LISTEN_PID" | "LISTEN_FDS" | "LISTEN_FDNAMES" | READY_FD_VAR)
                )
            })
            .collect();
        env.push(("LISTEN_FDS".into(), count.to_string().into()));
        let names = vec![FD_NAME; sockets.len()].join(":");
        env.push(("LISTEN_FDNAMES".into(), names.into()));
        env.push((READY_FD_VAR.into(), (3 + count).to_string().into()));
        let targets = (3..).zip(&sources).map(|(to, from)| (from.as_raw_fd(), to));
        let mut exec = Exec::new(&path, &program.args, &env, targets.collect())?;

        let mut command = Command::new(&path);
        command.args(&program.args);
        // SAFETY: `Exec::run` makes only async-signal-safe calls (getpid,
        // dup2, execve) and writes only memory it owns, allocated before
        // the fork.
        unsafe {
            command.pre_exec(move || exec.run());
        }
        // Registered before the child exists, so no failure can leave a
        // successor running unwatched (the receiver's close unregisters it).
        registry.register(&mut receiver, token, Interest::READABLE)?;
        let child = command.spawn()?;
        // The child has its copies now; ours would keep the pipe from
        // reporting the child's exit.
        drop(sources);
        let started = Instant::now();
        Ok(Successor {
            child,
            ready: receiver,
            said: Vec::new(),
            started,
            timeout,
            deadline: started.checked_add(timeout),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How long since it was started.
    fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// How long until the deadline, if it has one.
    fn timeout(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// Reads the pipe and checks the clock; a successor that failed is told
    /// to stop.
    fn progress(&mut self, registry: &Registry) -> Progress {
        let mut buf = [0; 64];
        let failure = loop {
            match self.ready.read(&mut buf) {
                Ok(0) => break self.exit_failure(),
                Ok(n) => {
                    self.said.extend_from_slice(&buf[..n]);
                    if let Some(end) = self.said.iter().position(|&b| b == b'\n') {
                        let said = std::str::from_utf8(&self.said[..end]).ok();
                        let Some(pid) = said.and_then(|s| s.trim().parse().ok()) else {
                            break format!("it said {:?}, not its pid", said.unwrap_or("?"));
                        };
                        let _ = registry.deregister(&mut self.ready);
                        return Progress::Ready {
                            pid,
                            after: self.started.elapsed(),
                        };
                    }
                    if self.said.len() > 64 {
                        break "it wrote something other than its pid".to_owned();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self
                        .deadline
                        .map_or(true, |deadline| Instant::now() < deadline)
                    {
                        return Progress::Waiting;
                    }
                    break format!("it was not ready within {:?}", self.timeout);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break format!("reading its readiness pipe failed: {e}"),
            }
        };
        let _ = registry.deregister(&mut self.ready);
        Progress::Failed(failure)
    }

    /// Why the pipe closed before the pid came: the child's exit status if
    /// it has exited (waiting a moment: the pipe closes just before the
    /// status can be read).
    fn exit_failure(&mut self) -> String {
        let until = Instant::now() + Duration::from_millis(100);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return format!("it exited before it was ready ({status})"),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
                _ => return "it closed its readiness pipe before it was ready".to_owned(),
            }
        }
    }

    /// Stops a successor that will not take over: SIGTERM, and SIGKILL
    /// after [`KILL_AFTER`] if it has not exited; reaped on a thread of its
    /// own so the server is not held up. Returns what was done, for the log.
    fn dismiss(mut self) -> &'static str {
        if let Ok(Some(_)) = self.child.try_wait() {
            return "it has exited";
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety preconditions; the child is
        // not reaped yet, so the pid is still this child's.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let mut child = self.child;
        let reaper = std::thread::Builder::new()
            .name("ebb-upgrade-reaper".to_owned())
            .spawn(move || {
                let until = Instant::now() + KILL_AFTER;
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            log::info!("the failed successor {pid} exited ({status})");
                            return;
                        }
                        Ok(None) if Instant::now() < until => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        _ => break,
                    }
                }
                log::warn!(
                    "the failed successor {pid} ignored SIGTERM for {KILL_AFTER:?}: SIGKILL"
                );
                let _ = child.kill();
                let _ = child.wait();
            });
        match reaper {
            Ok(_) => "stopping it (SIGTERM)",
            Err(_) => "stopping it (SIGTERM; it will not be reaped)",
        }
    }
}

/// A copy of `fd` numbered at least `min`, close-on-exec.
fn dup_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor, owned by the result.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Everything the child needs between fork and exec, built before the fork.
struct Exec {
    path: CString,
    _args: Vec<CString>,
    _env: Vec<CString>,
    /// `LISTEN_PID=` and room for the digits of any pid and a NUL.
    pid_slot: Box<[u8]>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// `(from, to)`: the descriptors to move into place.
    moves: Vec<(RawFd, RawFd)>,
}

// SAFETY: the raw pointers point into the CStrings and the slot that the
// struct owns; it is moved into the pre-exec closure and used only there.
unsafe impl Send for Exec {}
// SAFETY: as above; `run` takes `&mut self`, so it is never shared.
unsafe impl Sync for Exec {}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

impl Exec {
    fn new(
        path: &Path,
        args: &[OsString],
        env: &[(OsString, OsString)],
        moves: Vec<(RawFd, RawFd)>,
    ) -> io::Result<Exec> {
        let c = |s: &OsStr| {
            CString::new(s.as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?} contains NUL"))
            })
        };
        let path = c(path.as_os_str())?;
        let mut all_args = vec![path.clone()];
        for arg in args {
            all_args.push(c(arg)?);
        }
        let mut all_env = Vec::with_capacity(env.len());
        for (name, value) in env {
            let mut pair = name.clone();
            pair.push("=");
            pair.push(value);
            all_env.push(c(&pair)?);
        }
        // u32::MAX has 10 digits; then the NUL.
        let mut pid_slot = vec![0; LISTEN_PID.len() + 11].into_boxed_slice();
        pid_slot[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
        let mut argv: Vec<*const c_char> = all_args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const c_char> = all_env.iter().map(|e| e.as_ptr()).collect();
        envp.push(pid_slot.as_ptr().cast());
        envp.push(std::ptr::null());
        Ok(Exec {
            path,
            _args: all_args,
            _env: all_env,
            pid_slot,
            argv,
            envp,
            moves,
        })
    }

    /// In the child, between fork and exec: returns only on failure.
    fn run(&mut self) -> io::Result<()> {
        for &(from, to) in &self.moves {
            // SAFETY: dup2 is async-signal-safe; `from` is open (owned by the
            // parent's copy of the table until exec).
            if unsafe { libc::dup2(from, to) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: getpid is async-signal-safe.
        let mut pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (pid % 10) as u8;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        let slot = &mut self.pid_slot[LISTEN_PID.len()..];
        let digits = &digits[start..];
        slot[..digits.len()].copy_from_slice(digits);
        slot[digits.len()] = 0;
        // The slot's heap address, already in `envp`, is unchanged.
        // SAFETY: execve is async-signal-safe; path, argv and envp are
        // NUL-terminated strings and NULL-terminated arrays that live in
        // `self`.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        Err(io::Error::last_os_error())
    }
}

/// One upgrade attempt's outcome, for its report line.
enum Outcome {
    HandedOff { pid: u32, after: Duration },
    Failed { after: Duration, why: String },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::HandedOff { pid, after } => write!(
                f,
                "upgrade report: handed off to successor {pid}, ready after {}ms",
                after.as_millis()
            ),
            Outcome::Failed { after, why } => write!(
                f,
                "upgrade report: failed after {}ms ({why}); still serving",
                after.as_millis()
            ),
        }
    }
}

/// The coordinator's side of hot upgrades, one at a time: it starts the
/// successor on request, follows it, and hands over or gives up.
pub(crate) struct Upgrader {
    program: io::Result<Program>,
    timeout: Duration,
    /// The distinct listening sockets (descriptor, inode) to pass on.
    sockets: Vec<(RawFd, u64)>,
    state: UpgradeState,
    pid_file: Option<PidFile>,
    /// The readiness pipe's token on the coordinator's poll.
    token: Token,
}

enum UpgradeState {
    Idle,
    Starting(Successor),
    /// The listeners belong to this successor now.
    HandedOff(u32),
}

impl Upgrader {
    pub(crate) fn new(
        program: io::Result<Program>,
        timeout: Duration,
        sockets: Vec<(RawFd, u64)>,
        pid_file: Option<PidFile>,
        token: Token,
    ) -> Upgrader {
        Upgrader {
            program,
            timeout,
            sockets,
            state: UpgradeState::Idle,
            pid_file,
            token,
        }
    }

    /// An upgrade requested by `why` (a signal's name, or a call): starts
    /// the successor, unless an upgrade is under way or the server stops.
    pub(crate) fn request(&mut self, why: &str, shutdown: &ShutdownHandle, registry: &Registry) {
        let busy = match &self.state {
            UpgradeState::Starting(successor) => Some(format!(
                "an upgrade is already under way (successor {})",
                successor.pid()
            )),
            UpgradeState::HandedOff(pid) => Some(format!("already handed off to successor {pid}")),
            UpgradeState::Idle if shutdown.is_stopping() => Some("the server is stopping".into()),
            UpgradeState::Idle => None,
        };
        if let Some(busy) = busy {
            log::warn!("{why} ignored: {busy}");
            return;
        }
        let started = match &self.program {
            Ok(program) => {
                Successor::start(program, &self.sockets, self.timeout, registry, self.token)
                    .map_err(|e| format!("cannot start {}: {e}", program.path.display()))
            }
            Err(e) => Err(format!("the successor's command is unknown: {e}")),
        };
        match started {
            Ok(successor) => {
                log::info!(
                    "{why}: upgrading: started successor {} ({}), waiting up to {:?} for it to serve",
                    successor.pid(),
                    self.program.as_ref().map_or("?".into(), |p| p.path.display().to_string()),
                    self.timeout,
                );
                self.state = UpgradeState::Starting(successor);
            }
            Err(why) => {
                log::error!("upgrade failed: {why}; still serving");
                log::info!(
                    "{}",
                    Outcome::Failed {
                        after: Duration::ZERO,
                        why,
                    }
                );
            }
        }
    }

    /// Follows a starting successor; true when it serves and the listeners
    /// were handed to it (the workers must be woken to apply the hand-off).
    pub(crate) fn progress(&mut self, shutdown: &ShutdownHandle, registry: &Registry) -> bool {
        let UpgradeState::Starting(successor) = &mut self.state else {
            return false;
        };
        let (pid, after) = match successor.progress(registry) {
            Progress::Waiting => return false,
            Progress::Ready { pid, after } => (pid, after),
            Progress::Failed(why) => {
                let child = successor.pid();
                let after = successor.age();
                self.fail(after, format!("successor {child}: {why}"));
                return false;
            }
        };
        if !shutdown.hand_off() {
            // A stop came first: it wins (and normally abandoned the upgrade).
            self.abandon("a stop request");
            return false;
        }
        self.state = UpgradeState::HandedOff(pid);
        notify(&format!("MAINPID={pid}"));
        log::info!(
            "upgrade: successor {pid} serves after {}ms; handing the listeners over and draining",
            after.as_millis()
        );
        log::info!("{}", Outcome::HandedOff { pid, after });
        true
    }

    /// Gives up a starting successor because of `why` (a stop request).
    pub(crate) fn abandon(&mut self, why: &str) {
        if let UpgradeState::Starting(successor) = &self.state {
            let after = successor.age();
            self.fail(after, format!("abandoned: {why} came during it"));
        }
    }

    /// Ends the attempt: the successor is stopped, the pid file names this
    /// process again, and the log says why.
    fn fail(&mut self, after: Duration, why: String) {
        let UpgradeState::Starting(successor) =
            std::mem::replace(&mut self.state, UpgradeState::Idle)
        else {
            return;
        };
        let pid = successor.pid();
        let done = successor.dismiss();
        log::warn!("upgrade failed: {why}; successor {pid}: {done}; still serving");
        if let Some(pid_file) = &self.pid_file {
            // The successor may have taken it just before it failed.
            if pid_file.read() != Some(std::process::id()) {
                pid_file.write_or_log(std::process::id());
            }
        }
        log::info!("{}", Outcome::Failed { after, why });
    }

    /// How long the coordinator may sleep: until a starting successor's deadline.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        match &self.state {
            UpgradeState::Starting(successor) => successor.timeout(),
            _ => None,
        }
    }
}
