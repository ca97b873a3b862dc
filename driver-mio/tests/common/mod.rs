//! Set-up the driver's tests share.

use std::net::{SocketAddr, TcpListener};

use ebb_mio::Builder;

/// A builder that serves a fresh loopback listener with `workers` workers
/// and leaves signals alone (the test stops it through its shutdown
/// handle), and the address it listens on.
pub fn on_loopback(workers: usize) -> (Builder, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let builder = Builder::new()
        .listener(listener)
        .workers(workers)
        .signals(false);
    (builder, addr)
}
