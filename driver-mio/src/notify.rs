//! The service manager's readiness protocol (`sd_notify`): one datagram of
//! `KEY=VALUE` lines to the unix socket named in `NOTIFY_SOCKET`.
//!
//! Written here rather than taken from a crate: it is one `send_to` on a
//! `UnixDatagram`, and the one subtle part, a socket in the abstract
//! namespace (`@name`), std covers.
//!
//! ebb sends `READY=1` once its workers poll the listeners (a successor
//! too: its unit needs `NotifyAccess=all`), `STOPPING=1` when a stop begins
//! the drain, and `MAINPID=<pid>` when it hands the listeners to a
//! successor, which is the service's main process from then on.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// The variable that names the socket.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. `"READY=1"`) if the process runs under a service
/// manager that asked for it; a failure is logged, never fatal.
pub(crate) fn notify(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    match send(&socket, state) {
        Ok(()) => log::debug!("sd_notify: {state}"),
        Err(e) => log::warn!("sd_notify {state:?} to {socket:?}: {e}"),
    }
}

/// Sends `state` to the socket at `path`: a file system path, or `@name`
/// for the abstract namespace.
fn send(path: &OsStr, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        return send_abstract(&socket, name, state);
    }
    if !bytes.starts_with(b"/") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "only absolute paths and @abstract names are supported",
        ));
    }
    socket.send_to(state.as_bytes(), path).map(drop)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], state: &str) -> io::Result<()> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(state.as_bytes(), &addr).map(drop)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0; 256];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_path_socket_gets_the_state() {
        let dir = std::env::temp_dir().join(format!("ebb-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(receive(&socket), "READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_gets_the_state() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ebb-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&socket), "STOPPING=1");
    }

    #[test]
    fn a_relative_path_is_refused() {
        assert!(send(OsStr::new("notify.sock"), "READY=1").is_err());
    }
}
