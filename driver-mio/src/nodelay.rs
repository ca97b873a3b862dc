//! `TCP_NODELAY` on every connection, with one `setsockopt` per worker
//! rather than one per connection where the kernel allows it.
//!
//! A response leaves in one vectored write, but pipelined responses and
//! streamed bodies take several; Nagle's algorithm would hold each later one
//! back until the client acknowledged the one before. Linux copies
//! `TCP_NODELAY` from a listening socket to the connections it accepts, so
//! a worker sets it on its listener and need not set it again on each
//! connection: with `Connection: close`, one syscall fewer of the six a
//! connection costs (accept, setsockopt, epoll_ctl, read, write, close).
//! Whether the copy happened is read off the first connection, once: a
//! listener handed over by the embedding program or by systemd may refuse
//! the option, and another platform may not copy it; then each connection
//! gets it, as before.

use std::os::fd::AsFd;

use socket2::SockRef;

/// What a worker knows of its connections' `TCP_NODELAY`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum NoDelay {
    /// No connection accepted yet.
    Unknown,
    /// Accepted connections come with it set.
    Inherited,
    /// Each connection needs it set.
    PerConnection,
}

impl NoDelay {
    /// Sets `TCP_NODELAY` on `listener`, for the connections it accepts to
    /// inherit. A failure is left for [`NoDelay::accepted`] to make up for.
    pub(crate) fn on_listener(listener: &impl AsFd) -> NoDelay {
        if let Err(e) = SockRef::from(listener).set_tcp_nodelay(true) {
            log::debug!("TCP_NODELAY on the listener: {e}");
        }
        NoDelay::Unknown
    }

    /// Makes sure the connection just accepted has `TCP_NODELAY`: a look
    /// for the first connection, nothing once it was inherited, else a
    /// `setsockopt`.
    pub(crate) fn accepted(&mut self, stream: &impl AsFd) {
        if *self == NoDelay::Unknown {
            let has_it = SockRef::from(stream).tcp_nodelay().unwrap_or(false);
            *self = if has_it {
                NoDelay::Inherited
            } else {
                NoDelay::PerConnection
            };
        }
        if *self == NoDelay::PerConnection {
            if let Err(e) = SockRef::from(stream).set_tcp_nodelay(true) {
                log::debug!("TCP_NODELAY: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn nodelay(stream: &TcpStream) -> bool {
        stream.nodelay().unwrap()
    }

    /// Accepts one connection made to `listener`.
    fn accept(listener: &TcpListener) -> TcpStream {
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.accept().unwrap().0
    }

    #[test]
    fn connections_from_a_listener_with_it_inherit_it_and_are_not_set_again() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut state = NoDelay::on_listener(&listener);
        for _ in 0..3 {
            let stream = accept(&listener);
            state.accepted(&stream);
            assert!(nodelay(&stream));
        }
        // Where the kernel copies the option, no connection was set; this
        // is the case ebb counts on, so a kernel that stops copying it
        // shows here.
        #[cfg(target_os = "linux")]
        assert_eq!(state, NoDelay::Inherited);
    }

    #[test]
    fn connections_from_a_listener_without_it_get_it_each() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // A listener that took the option could not pass it on (or was
        // handed over without it, which is the same to the connections).
        let mut state = NoDelay::Unknown;
        for _ in 0..3 {
            let stream = accept(&listener);
            assert!(!nodelay(&stream));
            state.accepted(&stream);
            assert!(nodelay(&stream));
        }
        assert_eq!(state, NoDelay::PerConnection);
    }
}
