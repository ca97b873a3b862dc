//! Listening sockets: bound here (with socket2, for `SO_REUSEPORT` and the
//! backlog), handed over by the embedding program, or inherited from systemd.

use std::io;
use std::net::{SocketAddr, TcpListener};

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

/// One non-blocking listener per worker: each its own socket on the same
/// address with `reuse_port`, otherwise clones of one socket.
pub(crate) fn listeners(plan: Plan) -> io::Result<Vec<TcpListener>> {
    let inherited = if plan.socket_activation {
        systemd_listener()?
    } else {
        None
    };
    let source = match inherited {
        Some(listener) => {
            log::info!("using the listener passed by systemd (LISTEN_FDS)");
            Source::Std(listener)
        }
        None => plan.source,
    };
    let first = match source {
        Source::Std(listener) => {
            if plan.reuse_port {
                log::warn!("reuse_port ignored: the listener was given, so all workers share it");
            }
            return share(listener, plan.workers);
        }
        Source::Addr(addr) => bind(addr, plan.reuse_port, plan.backlog)?,
    };
    if !plan.reuse_port {
        return share(first, plan.workers);
    }
    warn_if_migrate_req_off();
    // Port 0 picks a port once; the siblings join the one picked.
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..plan.workers {
        all.push(bind(addr, true, plan.backlog)?);
    }
    Ok(all)
}

/// The listener systemd socket activation passed to this process, if any:
/// `LISTEN_PID` is this process and `LISTEN_FDS` is at least 1. The first
/// passed descriptor (3) is used.
pub fn systemd_listener() -> io::Result<Option<TcpListener>> {
    const SD_LISTEN_FDS_START: i32 = 3;
    let var = |name| std::env::var(name).ok();
    let (Some(pid), Some(fds)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    match fds.trim().parse::<u32>() {
        Ok(0) | Err(_) => return Ok(None),
        Ok(1) => {}
        Ok(n) => log::warn!("LISTEN_FDS={n}: only the first socket is used"),
    }
    // SAFETY: systemd guarantees descriptor 3 is open and ours when
    // LISTEN_PID names this process; nothing else in the process owns it.
    let socket = unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(SD_LISTEN_FDS_START) };
    if socket.r#type()? != Type::STREAM || !socket.is_listener()? {
        std::mem::forget(socket);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "LISTEN_FDS: descriptor 3 is not a listening stream socket",
        ));
    }
    socket.set_cloexec(true)?;
    Ok(Some(socket.into()))
}

fn bind(addr: SocketAddr, reuse_port: bool, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
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
