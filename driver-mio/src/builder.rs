//! The embedding API's entry point: [`Builder`].

use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use ebb_core::{Config, DrainReport, Request};

use crate::handler::{Handler, Responder};
use crate::listener::{Plan, Source};
use crate::pidfile::PidFile;
use crate::shutdown::ShutdownHandle;
use crate::upgrade::{Program, DEFAULT_UPGRADE_TIMEOUT};

/// The listen backlog when none is set.
pub const DEFAULT_BACKLOG: i32 = 1024;

/// Configures and runs a server.
///
/// ```no_run
/// use ebb_mio::{Builder, Request, Responder, Response};
/// use std::time::Duration;
///
/// let report = Builder::new()
///     .bind("127.0.0.1:8080".parse().unwrap())
///     .drain_timeout(Duration::from_secs(10))
///     .serve(|_req: &Request<'_>, res: Responder| res.respond(Response::text(200, "hi")))
///     .unwrap();
/// println!("{report}");
/// ```
#[derive(Debug)]
pub struct Builder {
    source: Source,
    socket_activation: bool,
    workers: Option<usize>,
    reuse_port: bool,
    backlog: i32,
    signals: bool,
    config: Config,
    shutdown: ShutdownHandle,
    upgrade_command: Option<Program>,
    upgrade_timeout: Duration,
    pid_file: Option<PathBuf>,
    observing: crate::observer::Observing,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// Defaults: bind `127.0.0.1:8080`, one worker per available CPU, no
    /// `SO_REUSEPORT`, backlog 1024, signals handled, no socket activation,
    /// `Config::default()`, no pid file; a hot upgrade runs this program
    /// again and waits 30 s for it to serve.
    pub fn new() -> Builder {
        Builder {
            source: Source::Addr(SocketAddr::from(([127, 0, 0, 1], 8080))),
            socket_activation: false,
            workers: None,
            reuse_port: false,
            backlog: DEFAULT_BACKLOG,
            signals: true,
            config: Config::default(),
            shutdown: ShutdownHandle::new(),
            upgrade_command: None,
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
            pid_file: None,
            observing: Default::default(),
        }
    }

    /// Binds this address. Port 0 picks a free port, which is logged; a
    /// program that needs it binds a `TcpListener` itself, reads its
    /// `local_addr`, and passes it to [`listener`](Self::listener).
    pub fn bind(mut self, addr: SocketAddr) -> Builder {
        self.source = Source::Addr(addr);
        self
    }

    /// Serves on a listener the embedding program bound. All workers share it.
    pub fn listener(mut self, listener: TcpListener) -> Builder {
        self.source = Source::Std(listener);
        self
    }

    /// When on, and systemd passed sockets (`LISTEN_PID` is this process,
    /// `LISTEN_FDS` ≥ 1), serve on them instead of binding; otherwise fall
    /// back to the bind address or listener. Off by default.
    ///
    /// Sockets passed by a hot upgrade (the same variables, plus
    /// `EBB_UPGRADE_READY_FD`) are taken whether this is on or not.
    pub fn socket_activation(mut self, on: bool) -> Builder {
        self.socket_activation = on;
        self
    }

    /// Worker threads, each with its own loop and core (at least 1).
    pub fn workers(mut self, workers: usize) -> Builder {
        self.workers = Some(workers.max(1));
        self
    }

    /// With `SO_REUSEPORT` each worker binds its own listener on the address,
    /// and other processes may bind it too. Ignored for a given listener.
    pub fn reuse_port(mut self, on: bool) -> Builder {
        self.reuse_port = on;
        self
    }

    /// The listen backlog of sockets bound here: at least 1 (the kernel caps
    /// it at `net.core.somaxconn`).
    pub fn backlog(mut self, backlog: i32) -> Builder {
        self.backlog = backlog;
        self
    }

    /// Whether ebb handles signals: SIGTERM, SIGINT and SIGQUIT start the
    /// drain (and a second one forces the exit); SIGUSR2 starts a hot
    /// upgrade; SIGHUP and SIGUSR1 are logged and ignored. On by default;
    /// turn it off when the embedding program handles signals and uses a
    /// [`ShutdownHandle`]: then ebb installs no signal handling at all. A
    /// program that starts threads before it serves should call
    /// [`hold_back_signals`](crate::hold_back_signals) first, so that no
    /// stop signal is lost while ebb installs its handlers.
    pub fn signals(mut self, on: bool) -> Builder {
        self.signals = on;
        self
    }

    /// Every limit and timeout of core at once. It replaces the whole
    /// config, also fields an earlier shortcut set (`drain_timeout`,
    /// `pre_stop`, `first_byte_grace`, `keep_alive_timeout`,
    /// `max_body_bytes`, `stream_request_bodies`): call it first, then the
    /// shortcuts.
    pub fn config(mut self, config: Config) -> Builder {
        self.config = config;
        self
    }

    /// From the start of the drain to the forced exit.
    pub fn drain_timeout(mut self, timeout: Duration) -> Builder {
        self.config.drain_timeout = timeout;
        self
    }

    /// After a stop request, how long to keep serving while readiness
    /// routes report stopping.
    pub fn pre_stop(mut self, pre_stop: Duration) -> Builder {
        self.config.pre_stop = pre_stop;
        self
    }

    /// During the drain, how long a new connection may stay silent.
    pub fn first_byte_grace(mut self, grace: Duration) -> Builder {
        self.config.first_byte_grace = grace;
        self
    }

    /// How long an idle keep-alive connection is kept while serving.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Builder {
        self.config.keep_alive_timeout = timeout;
        self
    }

    /// Largest request body accepted (over it: 413).
    pub fn max_body_bytes(mut self, bytes: u64) -> Builder {
        self.config.max_body_bytes = bytes;
        self
    }

    /// Logs one line per finished request, at info level on the `log`
    /// target [`ACCESS_LOG_TARGET`](crate::ACCESS_LOG_TARGET) (`ebb::access`),
    /// in logfmt: see the README's "Access log". Off by default.
    pub fn access_log(mut self, on: bool) -> Builder {
        self.observing.access_log = on;
        self
    }

    /// Calls `observer` on the worker thread once per finished request and
    /// once per change of each worker's phase (see [`Observation`](crate::Observation)).
    /// Keep it quick: the worker's loop waits for it. A panic in it is logged
    /// and ignored.
    pub fn observe(
        mut self,
        observer: impl Fn(&crate::Observation<'_>) + Send + Sync + 'static,
    ) -> Builder {
        self.observing.observer = Some(std::sync::Arc::new(observer));
        self
    }

    /// Hand a request with a body to the handler at its head, and its body
    /// as it arrives through [`Responder::body`](crate::Responder::body)'s
    /// [`BodyReader`](crate::BodyReader), with back-pressure: uploads of any
    /// size in bounded memory. Off by default (bodies come whole, in
    /// [`Request::body`](crate::Request::body), up to
    /// [`max_body_bytes`](Self::max_body_bytes)). A streamed body is bounded
    /// by `Config::max_streamed_body_bytes` (unlimited by default); a handler
    /// that wants it whole reads it with
    /// [`BodyReader::read_to_end`](crate::BodyReader::read_to_end) and a limit.
    pub fn stream_request_bodies(mut self, on: bool) -> Builder {
        self.config.stream_request_bodies = on;
        self
    }

    /// A handle that starts the drain, or a hot upgrade, from code.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The successor a hot upgrade starts: `program` (a path, or a name
    /// looked up in `PATH` at the upgrade) with `args` (not including
    /// argv\[0\]). By default this program again — the path it was started
    /// as, so a binary replaced there is what runs — with the same
    /// arguments. The successor gets the listening sockets as `LISTEN_FDS`
    /// and must say it serves on `EBB_UPGRADE_READY_FD` (an ebb server does
    /// both by itself); a wrapper script must `exec` it, so that the pid
    /// stays the one in `LISTEN_PID`.
    pub fn upgrade_command<I, A>(mut self, program: impl Into<PathBuf>, args: I) -> Builder
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.upgrade_command = Some(Program {
            path: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// How long a hot upgrade waits for the successor to serve before it
    /// gives up, stops the successor and keeps serving (30 s by default). A
    /// timeout too long for the clock (`Duration::MAX`) never runs out: the
    /// upgrade waits until the successor serves or exits.
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Builder {
        self.upgrade_timeout = timeout;
        self
    }

    /// Writes this process's pid to `path` (atomically: a temporary file,
    /// then a rename) once it serves; a successor rewrites it once it
    /// serves, so `kill -USR2 $(cat path)` always reaches the process
    /// serving. Removed at exit if it still names this process. One that
    /// cannot be written fails [`serve`](Self::serve) at start.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Builder {
        self.pid_file = Some(path.into());
        self
    }

    /// Serves until the drain ends, then returns its report: one report for
    /// all workers (counts summed, the earliest start and the latest end of
    /// each phase; each worker's own report is logged at debug level).
    ///
    /// Signals are handled from the start of `serve`, before the listener is
    /// bound: a stop signal that comes at any moment after that is applied
    /// by every worker, even one not yet started.
    ///
    /// Fails at once, with [`io::ErrorKind::InvalidInput`], if the
    /// configuration has a zero that would refuse or cut every request of
    /// some kind ([`Config::validate`]), or if it binds and the backlog is
    /// below 1; fails, before it binds, if the pid file cannot be written
    /// (its directory is missing, say); and fails if the signals or the
    /// listener cannot be set up, or if a worker's loop fails.
    ///
    /// The handler is a closure or function; a closure's argument types are
    /// inferred from this bound (`.serve(|req, res| ...)`), which a generic
    /// `H: Handler` parameter cannot do. A named [`Handler`] type goes to
    /// [`Builder::serve_handler`].
    pub fn serve(
        self,
        handler: impl Fn(&Request<'_>, Responder) + Send + Sync + 'static,
    ) -> io::Result<DrainReport> {
        // Before anything is bound: a configuration that would refuse every
        // request is a start-up error, not a server answering only errors.
        self.config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let pid_file = self.pid_file.map(PidFile::new);
        if let Some(pid_file) = &pid_file {
            pid_file.check()?;
        }
        let signals = if self.signals {
            Some(crate::signals::register()?)
        } else {
            None
        };
        // Resolved now, before the binary can be replaced on disk.
        let program = match self.upgrade_command {
            Some(program) => {
                program.warn_unless_runnable();
                Ok(program)
            }
            None => Program::this_process(),
        };
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
        let listeners = crate::listener::listeners(Plan {
            source: self.source,
            workers,
            reuse_port: self.reuse_port,
            backlog: self.backlog,
            socket_activation: self.socket_activation,
        })
        .map_err(crate::serve::short_of_descriptors(workers))?;
        crate::serve::run(crate::serve::Setup {
            listeners: listeners.all,
            bound_here: listeners.bound_here,
            config: self.config,
            signals,
            shutdown: self.shutdown,
            handler,
            upgrade: (program, self.upgrade_timeout),
            pid_file,
            ready: listeners.ready,
            observing: self.observing,
        })
    }

    /// [`Builder::serve`] for a named type implementing [`Handler`], such as
    /// an application that owns its state and threads.
    pub fn serve_handler<H: Handler>(self, handler: H) -> io::Result<DrainReport> {
        self.serve(move |req, res| handler.call(req, res))
    }
}
