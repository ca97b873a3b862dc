//! # ebb-sim
//!
//! A deterministic simulator for ebb's core, in the manner of TigerBeetle's
//! VOPR and FoundationDB's simulator: one `u64` seed derives every knob and
//! every choice; the clock is virtual and jumps to the next event; the real
//! [`ebb_core::Server`] is driven through exactly the inputs a socket driver
//! uses, and its outputs are consumed the way a driver consumes them.
//!
//! ```text
//! cargo run -p ebb-sim --release -- --seeds N [--seed S] [--trace]
//! ```
//! prints the seed and its knobs first (for up to 10 seeds, or with
//! `--trace`), one line per failure with its replay command
//! (`cargo run -p ebb-sim --release -- --seed S`), the throughput, and last
//! `N passed, M failed`.
//!
//! ## The world
//! - [`world`]: the event queue (a `BTreeMap` keyed by `(time, sequence)`),
//!   the run loop that interleaves world events with core's
//!   [`poll_timeout`](ebb_core::Server::poll_timeout), and the liveness bound.
//! - [`knobs`]: swarm testing — per seed some client kinds are off and the
//!   rest skewed; latency, segment size, buffer sizes, read delays,
//!   application delays, backlog, timeouts, `pre_stop`, `drain_timeout`,
//!   signal times all vary.
//! - [`kernel`]: a bounded listen backlog (beyond it: refused); connections
//!   as two byte pipes with latency, arbitrary segmentation and bounded
//!   buffers; FIN each way; RST that destroys the receiver's unread bytes. A
//!   server socket closed with unread input, or receiving data after close,
//!   resets the client. Closing the listener resets what is queued (Linux
//!   without `tcp_migrate_req`).
//! - [`driver`]: the sim's driver — reads until empty asking `wants_read`
//!   before each read, pauses until `ResumeRead`, writes what `transmit` gives
//!   as far as the socket has room, accepts the backlog on `DrainBacklog`.
//!   After every input it drains `poll_event` until `None` and carries the
//!   events out in order, each tagged with the input that produced it.
//! - [`client`]: normal, pipelined, keep-alive with think time, slowloris,
//!   aborting (mid-head, mid-body, after the request, mid-response),
//!   half-closing, silent, large bodies (413 expected over `max_body_bytes`),
//!   `Expect: 100-continue`, garbage (4xx/5xx and close expected); some
//!   requests are HTTP/1.0, some close the connection, and no client sends
//!   more after a closing request (RFC 9112 §9.6). Retries
//!   only requests with no byte of response, on a new connection, at most
//!   three times.
//! - [`app`]: answers at once or after a delay up to past the deadline;
//!   checks each request's body against what its client sent. In some
//!   seeds it fails a share of requests — a status outside 200–599, a header
//!   value with CR/LF, or no answer at all (`handle_app_failure`) — and core
//!   must answer each such request with a token-less 500 in its slot, which
//!   the checker and the client accept as its complete answer (and the
//!   report counts it in `requests_completed`).
//!
//! ## The checks ([`check`])
//! After every step (safety):
//! - `check_invariants()` holds and `active_requests() == recount_active_requests()`;
//! - core never holds bytes for a socket with room without having said
//!   `Transmit`, nor wants to read a connection it paused without having
//!   said `ResumeRead` (either would stall until a deadline, where the cut
//!   would look legitimate);
//! - what core writes parses as HTTP/1.1, responses come in request order,
//!   no byte follows a `Connection: close` response, nothing is written
//!   after `HalfClose`, and nothing is handed to the application after the
//!   close response; a request whose first byte core received after the
//!   drain began is answered with `Connection: close`;
//! - no client that did not abort loses owed response bytes to a reset (or
//!   to a close mid-response) unless core closed that connection at a
//!   forced exit, on a timer (write stall, linger with nothing unread), or
//!   because linger exceeded `max_linger_bytes`;
//! - draining with the listener closed and no connection left means Exit in
//!   this very step; the exit is no later than the deadline.
//!
//! At exit, the drain report against what the world saw:
//! - `backlog_accepted`, `requests_completed`: **exact** (accepts made while
//!   carrying out `DrainBacklog`; final responses whose last byte was handed
//!   to the kernel after the first terminate);
//! - `requests_cut`: 0 unless forced; when forced, at least the handed
//!   requests not completely written on connections the forced exit closed,
//!   at most the active count before that step (a connection cut while its
//!   head or body is still arriving is invisible from outside);
//! - `silent_closed`, `idle_closed`: exact except in the steps where a timer
//!   and the phase change (end of PreStop, or a forced exit) coincide — the
//!   world cannot tell which of the two closed a connection there, so those
//!   are an allowed range;
//! - `reset_risk_closes`: only a bound — connections whose client lost
//!   response bytes in the drain are at most `reset_risk_closes + requests_cut`.
//!
//! At the end (liveness, bounded by terminate + `pre_stop` +
//! `drain_timeout` + 60 s of virtual time): core exited; every request handed
//! to the application was answered completely, unless its client aborted or
//! its loss is allowed as above; every client finished.
//!
//! ## Trace format
//! `--trace` prints one line per event, and tests hash the same lines:
//! ```text
//! <virtual µs>.<ns> <subject> <what>
//!   1234.567 net connect k3 client 7 latency 1.2ms     kernel: connect, refuse,
//!   1236.001 net k3 c2s data 57                        segments (data/fin/rst),
//!   1236.001 core input recv k3 57                     every core input,
//!   1236.001 core event Request(..) (from Recv)        every core event, with its input,
//!   1236.001 app got 7.0.0 on k3 (0 body bytes)        the application,
//!   1240.020 client 7 got 200 for 7.0.0 on k3          client decisions,
//!   5000.000 signal terminate #1                       signals,
//!   9000.000 exit report: drain complete in ..         the report, and `FAIL` lines.
//! ```
//! `k<N>` is the world's connection number; tokens `<client>.<request>.<attempt>`
//! name requests (the request target is `/r/<token>`, echoed in `x-req`).

pub mod app;
pub mod check;
pub mod client;
pub mod driver;
pub mod http;
pub mod kernel;
pub mod knobs;
pub mod rng;
pub mod trace;
pub mod world;

pub use world::{run, Outcome};
