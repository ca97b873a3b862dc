//! Listening sockets: bound here (with socket2, for `SO_REUSEPORT` and the
//! backlog), handed over by the embedding program, or inherited as
//! `LISTEN_FDS` — from systemd, or from the process this one upgrades: one
//! receive path for both.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

/// Where the listening socket comes from.
#[derive(Debug)]
pub(crate) enum Source {
    /// Bind this address.
    Addr(SocketAddr),
    /// Use a socket the embedding program bound.
    Std(TcpListener),
}

/// How to get the workers' listeners.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) source: Source,
    pub(crate) workers: usize,
    pub(crate) reuse_port: bool,
    pub(crate) backlog: i32,
    pub(crate) socket_activation: bool,
}

/// The workers' listeners, and where they came from.
pub(crate) struct Listeners {
    /// One per worker.
    pub(crate) all: Vec<TcpListener>,
    /// The readiness pipe of the process this one upgrades, if it does.
    pub(crate) ready: Option<OwnedFd>,
    /// Bound here, from the bind address: no other process (a service
    /// manager, a predecessor) or part of the program holds the sockets, so
    /// ebb may shut them down, not only close its descriptors.
    pub(crate) bound_here: bool,
}

/// One non-blocking listener per worker: each its own socket on the same
/// address with `reuse_port`, otherwise clones of one socket. Inherited
/// sockets come first (see [`take_inherited`]); then the given listener or
/// the bind address.
pub(crate) fn listeners(plan: Plan) -> io::Result<Listeners> {
    if let Some(inherited) = take_inherited(plan.socket_activation)? {
        let count = inherited.listeners.len();
        match &inherited.ready {
            Some(_) => log::info!(
                "using {count} listener(s) inherited from the previous process (hot upgrade)"
            ),
            None => log::info!("using {count} listener(s) passed by systemd (LISTEN_FDS)"),
        }
        let all = if count == 1 {
            if plan.reuse_port {
                log::warn!(
                    "reuse_port ignored: one listener was inherited, so all workers share it"
                );
            }
            let [listener] = <[TcpListener; 1]>::try_from(inherited.listeners)
                .map_err(|_| io::Error::other("one listener"))?;
            share(listener, plan.workers)?
        } else {
            spread(inherited.listeners, plan.workers)?
        };
        return Ok(Listeners {
            all,
            ready: inherited.ready,
            bound_here: false,
        });
    }
    let first = match plan.source {
        Source::Std(listener) => {
            if plan.reuse_port {
                log::warn!("reuse_port ignored: the listener was given, so all workers share it");
            }
            return Ok(Listeners {
                all: share(listener, plan.workers)?,
                ready: None,
                bound_here: false,
            });
        }
        Source::Addr(addr) => bind(addr, plan.reuse_port, plan.backlog)?,
    };
    let bound_here = |all| {
        Ok(Listeners {
            all,
            ready: None,
            bound_here: true,
        })
    };
    if !plan.reuse_port {
        return bound_here(share(first, plan.workers)?);
    }
    warn_if_migrate_req_off();
    // Port 0 picks a port once; the siblings join the one picked.
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..plan.workers {
        all.push(bind(addr, true, plan.backlog)?);
    }
    bound_here(all)
}

/// The first descriptor of the `LISTEN_FDS` protocol.
const SD_LISTEN_FDS_START: RawFd = 3;
/// The variable naming the descriptor on which a successor tells the
/// process that started it that it serves (see `upgrade.rs`).
pub(crate) const READY_FD_VAR: &str = "EBB_UPGRADE_READY_FD";

/// Listening sockets passed to this process, and how it says it is ready.
struct Inherited {
    /// Non-blocking, close-on-exec.
    listeners: Vec<TcpListener>,
    /// A hot upgrade's readiness pipe; `None` under systemd.
    ready: Option<OwnedFd>,
}

/// The sockets passed to this process as `LISTEN_FDS` (descriptors 3…),
/// once per process: by systemd socket activation (taken only when
/// `socket_activation` is on) or by the process it upgrades (always taken:
/// it set `EBB_UPGRADE_READY_FD` too, and waits for this process to serve
/// them). `LISTEN_PID` must be this process, as systemd's `sd_listen_fds`
/// requires: the upgrading process writes its child's pid into the child's
/// environment between fork and exec.
fn take_inherited(socket_activation: bool) -> io::Result<Option<Inherited>> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let var = |name| std::env::var(name).ok();
    let ready_var = var(READY_FD_VAR);
    if !socket_activation && ready_var.is_none() {
        return Ok(None);
    }
    let (Some(pid), Some(fds)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let count = match fds.trim().parse::<RawFd>() {
        Ok(n) if n > 0 => n,
        _ => return Ok(None),
    };
    // Descriptors are taken once: a second `serve` in the same process
    // must not take what may by now be another file.
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(count as usize);
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count {
        listeners.push(inherited_listener(fd)?);
    }
    let ready = match ready_var {
        None => None,
        Some(value) => {
            let fd: RawFd = value.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{READY_FD_VAR}={value:?} is not a descriptor"),
                )
            })?;
            // SAFETY: fcntl on any number is harmless; -1 means it is not open.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{READY_FD_VAR}={fd}: {}", io::Error::last_os_error()),
                ));
            }
            // SAFETY: the process that started this one passed this open
            // descriptor for this process alone, and it is taken once.
            let ready = unsafe { OwnedFd::from_raw_fd(fd) };
            set_cloexec(&ready)?;
            Some(ready)
        }
    };
    Ok(Some(Inherited { listeners, ready }))
}

/// Inherited descriptor `fd` as a listener, after checking it is one; made
/// non-blocking and close-on-exec (a descriptor passed across exec has
/// neither flag as this process needs it).
fn inherited_listener(fd: RawFd) -> io::Result<TcpListener> {
    // SAFETY: LISTEN_FDS and LISTEN_PID name this process, so descriptor
    // `fd` was passed to it; nothing else in the process owns it, and the
    // descriptors are taken once.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let checked =
        (|| Ok::<_, io::Error>(socket.r#type()? == Type::STREAM && socket.is_listener()?))();
    if !matches!(checked, Ok(true)) {
        std::mem::forget(socket);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS: descriptor {fd} is not a listening stream socket"),
        ));
    }
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn set_cloexec(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The listener systemd socket activation passed to this process, if any:
/// `LISTEN_PID` is this process and `LISTEN_FDS` is at least 1. The first
/// passed descriptor (3) is used. Returns `None` once the sockets were
/// taken, by an earlier call or by [`Builder::serve`](crate::Builder::serve).
pub fn systemd_listener() -> io::Result<Option<TcpListener>> {
    let Some(inherited) = take_inherited(true)? else {
        return Ok(None);
    };
    if inherited.listeners.len() > 1 {
        log::warn!(
            "LISTEN_FDS={}: only the first socket is used",
            inherited.listeners.len()
        );
    }
    Ok(inherited.listeners.into_iter().next())
}

/// One listener per worker from several inherited sockets (one per worker
/// of a `reuse_port` predecessor): every socket gets a worker, so none is
/// left unpolled; more workers than sockets share them in turn.
fn spread(sockets: Vec<TcpListener>, workers: usize) -> io::Result<Vec<TcpListener>> {
    if workers < sockets.len() {
        log::info!(
            "{} workers, one per inherited socket (not {workers})",
            sockets.len()
        );
    }
    let mut all = Vec::with_capacity(workers.max(sockets.len()));
    for i in sockets.len()..workers {
        all.push(sockets[i % sockets.len()].try_clone()?);
    }
    all.extend(sockets);
    Ok(all)
}

/// The distinct sockets among `listeners` (clones of one socket count
/// once), as `(descriptor, inode)`: what a hot upgrade passes on.
pub(crate) fn distinct_sockets(listeners: &[TcpListener]) -> io::Result<Vec<(RawFd, u64)>> {
    let mut sockets: Vec<(RawFd, u64)> = Vec::new();
    for listener in listeners {
        let inode = inode(listener.as_raw_fd())?;
        if !sockets.iter().any(|&(_, i)| i == inode) {
            sockets.push((listener.as_raw_fd(), inode));
        }
    }
    Ok(sockets)
}

/// The inode of the file open as `fd`: equal for every descriptor of one socket.
pub(crate) fn inode(fd: RawFd) -> io::Result<u64> {
    // SAFETY: fstat writes into the zeroed struct it is given.
    unsafe {
        let mut stat = std::mem::zeroed::<libc::stat>();
        if libc::fstat(fd, &mut stat) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stat.st_ino as u64)
    }
}

fn bind(addr: SocketAddr, reuse_port: bool, backlog: i32) -> io::Result<TcpListener> {
    // Linux takes a negative backlog as the largest, and zero as one
    // handshake queued at a time: either is a slip, not a choice.
    if backlog < 1 {
        let why = format!("backlog is {backlog}: it must be at least 1");
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // Named: "Address already in use" alone does not say which.
    let named = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    socket.bind(&addr.into()).map_err(named)?;
    socket.listen(backlog).map_err(named)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn share(listener: TcpListener, workers: usize) -> io::Result<Vec<TcpListener>> {
    listener.set_nonblocking(true)?;
    let mut all = Vec::with_capacity(workers);
    for _ in 1..workers {
        all.push(listener.try_clone()?);
    }
    all.push(listener);
    Ok(all)
}

/// Closing a reuseport listener resets the connections queued in it unless
/// the kernel migrates them to a sibling.
fn warn_if_migrate_req_off() {
    if cfg!(target_os = "linux") {
        if let Ok(value) = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req") {
            if value.trim() == "0" {
                log::warn!(
                    "net.ipv4.tcp_migrate_req is 0: when a reuse_port listener closes, \
                     connections still queued in it are reset (sysctl -w net.ipv4.tcp_migrate_req=1)"
                );
            }
        }
    }
}
