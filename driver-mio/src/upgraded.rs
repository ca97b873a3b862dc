//! Connections that leave HTTP: the application's [`PendingUpgrade`] and
//! [`Upgraded`], and the worker's table of upgrades.
//!
//! Once core has written the `101`, the worker takes the socket out of its
//! poll, keeps a duplicate of its descriptor and hands the socket, in
//! blocking mode, to the application with the bytes that came after the
//! request. From then on the worker only watches the lifecycle: it passes on
//! the drain's stop notice ([`Event::StopUpgraded`](ebb_core::Event)), shuts
//! the socket down through its duplicate when the deadline cuts the
//! connection, and tells core when the application lets go of it.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ebb_core::{Bytes, CloseReason, ConnId, RequestId, RespondError, Server, Time};

use crate::handler::{on_worker_thread, Inbox, Message};

/// An accepted upgrade whose `101` is on its way: [`wait`](Self::wait) for
/// the connection. From [`Responder::upgrade`](crate::Responder::upgrade).
///
/// Dropping it before the connection is handed over closes the connection
/// once it is.
#[derive(Debug)]
pub struct PendingUpgrade {
    rx: Receiver<io::Result<Upgraded>>,
}

/// What the worker needs to switch a connection: the `101`'s headers and
/// where to hand the connection.
pub(crate) struct UpgradeStart {
    headers: Vec<(Cow<'static, str>, Bytes)>,
    tx: SyncSender<io::Result<Upgraded>>,
}

/// An upgrade answered with `headers`: what goes to the worker, and what
/// goes to the application.
pub(crate) fn start(headers: Vec<(Cow<'static, str>, Bytes)>) -> (UpgradeStart, PendingUpgrade) {
    let (tx, rx) = mpsc::sync_channel(1);
    (UpgradeStart { headers, tx }, PendingUpgrade { rx })
}

impl PendingUpgrade {
    /// Waits until the `101` is written and returns the connection. Fails if
    /// the request did not ask to upgrade (core answered 500), if the
    /// connection closed first, or — with `WouldBlock`, since the worker
    /// would wait for itself — when called on a worker thread (in the
    /// handler): wait from a thread of the application's.
    pub fn wait(self) -> io::Result<Upgraded> {
        if on_worker_thread() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "waiting for an upgrade on a worker thread would wait forever: wait from another thread",
            ));
        }
        self.rx.recv().unwrap_or_else(|_| Err(lost()))
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; `TimedOut` then.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<Upgraded> {
        match self.rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(io::ErrorKind::TimedOut.into()),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(lost()),
        }
    }

    /// The connection if it has been handed over, without waiting; `None`
    /// while the `101` is still on its way.
    pub fn try_take(&self) -> Option<io::Result<Upgraded>> {
        match self.rx.try_recv() {
            Ok(result) => Some(result),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(lost())),
        }
    }
}

fn lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the connection closed before its 101 was written",
    )
}

/// A connection that has left HTTP: its socket, and the bytes the client
/// sent after the upgrade request (read first by [`Read`]).
///
/// It reads and writes like the socket itself ([`Read`], [`Write`]); the
/// socket is in blocking mode, and [`get_ref`](Self::get_ref) reaches it for
/// timeouts, `try_clone` (to read and write from two threads) or
/// non-blocking use. Dropping the `Upgraded` closes the connection and tells
/// the server, whose drain no longer waits for it (a clone made with
/// `try_clone` keeps the socket open past that: close it too).
///
/// The drain does not cut an upgraded connection at once: it tells the
/// application ([`is_stopping`](Self::is_stopping),
/// [`on_stop`](Self::on_stop)) and waits until the application closes it or
/// the deadline passes; then the socket is shut down, so reads return end of
/// file and writes fail.
pub struct Upgraded {
    stream: TcpStream,
    early: Vec<u8>,
    /// How much of `early` has been read.
    early_read: usize,
    stop: Arc<Stop>,
    conn: ConnId,
    inbox: Arc<Inbox>,
}

/// The drain's stop notice for one upgraded connection.
#[derive(Default)]
struct Stop {
    stopping: AtomicBool,
    notice: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Stop {
    fn notify(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let notice = self.notice.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(notice) = notice {
            notice();
        }
    }
}

impl Upgraded {
    /// The socket (blocking).
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// The bytes that arrived after the upgrade request and have not been
    /// read yet. [`Read`] returns them first.
    pub fn early_input(&self) -> &[u8] {
        &self.early[self.early_read..]
    }

    /// Whether the server's drain has begun: wind the connection down (say
    /// goodbye in its protocol and close it) before the drain deadline.
    pub fn is_stopping(&self) -> bool {
        self.stop.stopping.load(Ordering::SeqCst)
    }

    /// Calls `notice` once when the drain begins — at once if it has. It runs
    /// on the worker's thread, so it must be quick: set a flag, signal a
    /// thread, or shut down the socket (through a `try_clone`) so a blocked
    /// read returns. A later call replaces an earlier one not yet called.
    pub fn on_stop(&self, notice: impl FnOnce() + Send + 'static) {
        let mut slot = self.stop.notice.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_stopping() {
            drop(slot);
            notice();
        } else {
            *slot = Some(Box::new(notice));
        }
    }

    /// The connection's id, as core knows it.
    pub fn conn_id(&self) -> ConnId {
        self.conn
    }
}

impl Read for Upgraded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let early = self.early_input();
        if !early.is_empty() {
            let n = early.len().min(buf.len());
            buf[..n].copy_from_slice(&early[..n]);
            self.early_read += n;
            if self.early_read == self.early.len() {
                self.early = Vec::new();
                self.early_read = 0;
            }
            return Ok(n);
        }
        self.stream.read(buf)
    }
}

impl Write for Upgraded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Drop for Upgraded {
    fn drop(&mut self) {
        self.inbox.post(Message::UpgradedClosed(self.conn));
    }
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("conn", &self.conn)
            .field("early_input", &self.early_input().len())
            .field("stopping", &self.is_stopping())
            .finish_non_exhaustive()
    }
}

/// The worker's upgrades, by connection: waiting for the `101` to be
/// written, or handed to the application.
#[derive(Default)]
pub(crate) struct Upgrades {
    table: Vec<Option<Entry>>,
}

enum Entry {
    /// The `101` is queued; the connection goes here once it is written.
    Switching {
        conn: ConnId,
        tx: SyncSender<io::Result<Upgraded>>,
    },
    /// The application has the connection.
    Open {
        conn: ConnId,
        /// A duplicate of the socket's descriptor, to shut it down at the
        /// deadline; closed when core closes the connection.
        socket: TcpStream,
        stop: Arc<Stop>,
    },
}

impl Entry {
    fn conn(&self) -> ConnId {
        match self {
            Entry::Switching { conn, .. } | Entry::Open { conn, .. } => *conn,
        }
    }
}

impl Upgrades {
    /// Queues the `101` answering `id` in core; once it is written,
    /// [`handed_over`](Self::handed_over) passes the connection on.
    pub(crate) fn start(
        &mut self,
        server: &mut Server,
        id: RequestId,
        start: UpgradeStart,
        now: Time,
    ) -> Result<(), RespondError> {
        let headers = start
            .headers
            .iter()
            .map(|(name, value)| (name.as_bytes(), &value[..]));
        if let Err(e) = server.handle_upgrade(id, headers, now) {
            let why = match e {
                RespondError::NotAnUpgrade => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the request did not ask to upgrade: it was answered with 500",
                ),
                RespondError::UnknownRequest => lost(),
                e => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid upgrade header ({e}): the request was answered with 500"),
                ),
            };
            let _ = start.tx.try_send(Err(why));
            return Err(e);
        }
        let conn = id.conn();
        self.put(conn, Entry::Switching { conn, tx: start.tx });
        Ok(())
    }

    /// Core wrote the `101` on `conn` ([`Event::Upgraded`](ebb_core::Event)):
    /// hands `socket`, taken out of the worker's poll, and the early input to
    /// the application.
    pub(crate) fn handed_over(
        &mut self,
        server: &mut Server,
        conn: ConnId,
        socket: mio::net::TcpStream,
        inbox: &Arc<Inbox>,
        now: Time,
    ) {
        let tx = match self.take(conn) {
            Some(Entry::Switching { tx, .. }) => tx,
            _ => {
                log::error!("{conn:?} upgraded with nobody to take it: closing it");
                return server.handle_upgraded_closed(conn, now);
            }
        };
        let early = server.take_upgraded_input(conn);
        let stream = TcpStream::from(socket);
        let duplicate = stream
            .set_nonblocking(false)
            .and_then(|()| stream.try_clone());
        let socket = match duplicate {
            Ok(socket) => socket,
            Err(e) => {
                log::error!("handing over upgraded {conn:?}: {e}");
                let _ = tx.try_send(Err(e));
                return server.handle_upgraded_closed(conn, now);
            }
        };
        let stop = Arc::new(Stop::default());
        self.put(
            conn,
            Entry::Open {
                conn,
                socket,
                stop: stop.clone(),
            },
        );
        let upgraded = Upgraded {
            stream,
            early,
            early_read: 0,
            stop,
            conn,
            inbox: inbox.clone(),
        };
        // If the application let go of its `PendingUpgrade`, the `Upgraded`
        // is dropped here, which posts its close.
        let _ = tx.try_send(Ok(upgraded));
    }

    /// The drain began ([`Event::StopUpgraded`](ebb_core::Event)): tells the
    /// application owning `conn`.
    pub(crate) fn stop(&mut self, conn: ConnId) {
        if let Some(Some(Entry::Open {
            conn: open, stop, ..
        })) = self.table.get(conn.index())
        {
            if *open == conn {
                stop.notify();
            }
        }
    }

    /// Core closed `conn` for `reason`. An upgraded connection the
    /// application still holds (the deadline cut it, or the exit was forced)
    /// is shut down, so the application's reads end and its writes fail.
    pub(crate) fn closed(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(Entry::Open { socket, .. }) = self.take(conn) {
            if reason != CloseReason::UpgradedClosed {
                log::warn!("upgraded connection {conn:?} cut ({reason})");
                if let Err(e) = socket.shutdown(Shutdown::Both) {
                    log::debug!("shutting down upgraded {conn:?}: {e}");
                }
            }
        }
    }

    fn put(&mut self, conn: ConnId, entry: Entry) {
        let index = conn.index();
        if self.table.len() <= index {
            self.table.resize_with(index + 1, || None);
        }
        self.table[index] = Some(entry);
    }

    fn take(&mut self, conn: ConnId) -> Option<Entry> {
        self.table
            .get_mut(conn.index())?
            .take_if(|entry| entry.conn() == conn)
    }
}
