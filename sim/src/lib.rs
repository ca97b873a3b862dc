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
//! prints the seed and its knobs first, one per line (for up to 10 seeds, or
//! with `--trace`), one line per failure with its kind and replay command
//! (`cargo run -p ebb-sim --release -- --seed S`), the throughput, and last
//! `N passed, M failed`. In code: [`run_seed`]`(seed, `[`TraceMode`]`::Off)`.
//!
//! **Exit status**: 0 every seed passed; 1 a safety property failed (or core
//! panicked); 2 usage; 3 liveness; 4 the drain report disagreed with the
//! world; 5 a seed was not deterministic; 6 coverage — in a batch of at
//! least 500 seeds, a situation that some seeds' knobs enabled never
//! happened (the counters are printed one per line: backlog accepted, each
//! kind of forced exit, idle and silent closes, cuts, responses that kept a
//! connection in the drain for a request pipelined before it, PreStop
//! responses and those that kept a connection for a request pipelined
//! behind, application faults, farewells read, hand-offs and what the
//! successor served, 408s to CRLF and body tricklers and to bodies
//! stopped short, racing clients answered in the drain, streams
//! completed, cut by the deadline and stopped by their producer, producers
//! held back, broken declared lengths, uploads streamed and held back,
//! upgrades echoed, stopped by the drain's notice and cut, …). When seeds fail in different ways, the
//! smallest of their codes. A run of a few seeds (up to 10, or a trace)
//! runs each seed twice and compares the traces; a sweep does so for its
//! first seed.
//!
//! ## The properties
//! DESIGN.md's "Safety properties the simulator must hold on every seed",
//! numbered as the checks cite them:
//!
//! - **S1** The active count always equals the recount; it returns to zero
//!   when the connections it counted end, however they end.
//! - **S2** A request handed to the application is answered completely,
//!   unless the client aborted or the drain deadline cut it — and the drain
//!   report counts every such cut.
//! - **S3** A request that the server will not answer is never handed to the
//!   application (so a client may safely retry it).
//! - **S4** Responses on one connection come in request order; no bytes are
//!   written after the response that carried `Connection: close`.
//! - **S5** No response is destroyed by a reset the server caused:
//!   connections with unread input are closed through lingering close.
//! - **S6** Shutdown ends by the deadline, and within one step of the last
//!   active request ending.
//! - **S7** No request is lost: every request completely sent before the
//!   drain began (or accepted from the backlog, or sent on a connection the
//!   server had not yet half-closed) gets a complete response, or is counted
//!   as cut by the deadline or a forced exit.
//! - **S8** No reset reaches a client that did nothing wrong, outside a
//!   forced or deadline close; nothing queued in the backlog is reset when
//!   the listener closes after the backlog was drained.
//! - **S9** The drain keeps time: idle connections close within
//!   `idle_close_after`, silent ones within `first_byte_grace` (then
//!   linger), a second terminate exits in the same step, `CloseListener`
//!   comes only after the backlog.
//!
//! The rules the simulator shares with the `server_ops` fuzzer (when a
//! connection is due to close, which closes may skip lingering or lose a
//! response, when the listener may close early, what must exit at once,
//! which responses must close, the exit report) are stated once, in
//! [`ebb_testkit::properties`].
//!
//! ## The world, in parts
//! [`world`] holds the parts and the run loop; the parts do not call each
//! other, and the world routes between them:
//! - [`env`](mod@env): what all share — the virtual clock, the test kit's
//!   seeded [`Rng`](ebb_testkit::rng::Rng), the
//!   queue of timed events (a min-heap by `(time, sequence)`), the
//!   [`trace`](mod@trace), and the first [`failure`].
//! - [`knobs`]: swarm testing — per seed some client kinds are off and the
//!   rest skewed; latency, segment size, buffer sizes, read delays,
//!   application delays and faults, backlog, timeouts (about one seed in
//!   twenty with keep-alive off, so that every response closes),
//!   `pre_stop`, `drain_timeout`, signal times all vary; and streaming: the share of
//!   answers whose body streams (`stream_percent`), of producers that stop
//!   without ending (`stream_stop_percent`) and of declared lengths broken
//!   (`stream_mismatch_percent`), the gap between pieces (`stream_gap`),
//!   whether request bodies stream (`stream_request_bodies`, with
//!   `max_stream_buffer`), how slowly the application reads them
//!   (`upload_read_gap`) and how often it answers without reading them
//!   (`upload_unread_percent`), how often an upgraded connection's
//!   application ignores the drain's stop notice (`upgrade_ignore_stop`);
//!   and how many requests a pipelining client writes at once
//!   (`pipeline_depth`: up to 256 in half the seeds, so that reading
//!   pauses with requests unread in the socket when the drain begins); and
//!   how late the driver reads a readable socket (`read_lag`: up to 20 ms
//!   in half the seeds, as a driver busy elsewhere or reading in its own
//!   time would, so that bytes wait unread when a timer falls due).
//! - [`kernel`]: a bounded listen backlog (beyond it: refused); connections
//!   as two byte pipes with latency, arbitrary segmentation (data due at
//!   one instant arrives as one segment) and bounded buffers; FIN each way; RST that destroys the receiver's unread bytes. A
//!   server socket closed with unread input, or receiving data after close,
//!   resets the client. Closing the listener resets what is queued (Linux
//!   without `tcp_migrate_req`) — unless it was handed to a successor, who
//!   accepts from the same queue. It tells endpoints what happened through
//!   queued notices (readable, writable, reset).
//! - [`driver`]: the sim's driver — reads until empty (after `read_lag`)
//!   asking `wants_read`
//!   before each read, pauses until `ResumeRead`, writes what `transmit` gives
//!   as far as the socket has room, accepts the backlog on `DrainBacklog`,
//!   writes a `Farewell` once if the socket has room for all of it, and
//!   before a forced close reads what is unread (as the mio driver does).
//!   After every input it drains `poll_event` until `None`; the events are
//!   carried out in order, each tagged with the input that produced it.
//! - [`request`]: the requests clients write (tokens, bodies, framing);
//!   what core writes back is read by the test kit's one parser,
//!   [`ResponseParser`](ebb_testkit::response::ResponseParser), on both
//!   sides — the checker's (everything core hands the kernel) and each
//!   client's (what it reads).
//! - [`client`]: normal, pipelined, keep-alive with think time, slowloris,
//!   aborting (mid-head, mid-body, after the request, mid-response),
//!   half-closing, silent, large bodies (413 expected over `max_body_bytes`),
//!   `Expect: 100-continue`, garbage (4xx/5xx and close expected), CRLF
//!   tricklers (empty lines slowly, before a request or instead of one: 408
//!   at the header timeout, timed), body tricklers (under the minimum body
//!   rate: 408, never an answer), body stoppers (a `Content-Length` body
//!   sent in part, or none of it, then nothing more: they wait, reading,
//!   for the 408 of the body timeout, never an answer — but the
//!   application's own when it answers a streamed body unread — due by
//!   their last byte plus the timeout, an accept delay, latency both ways
//!   and a read delay, unless a close that may cut came first or core
//!   still holds open a stream before it that they read whole), racing
//!   keep-alive clients (requests sent just before or after the drain's
//!   start, the idle close, the keep-alive timeout); core's farewell 503 is a clean refusal, retried; some
//!   requests are HTTP/1.0, some close the connection, and no client sends
//!   more after a closing request (RFC 9112 §9.6). Slow readers ask for
//!   large streamed responses and read them a little at a time (the
//!   producer is held back), and some abort mid-stream; upgrading clients
//!   ask for `Upgrade: echo` (some with their first message right behind
//!   the request), then send messages and check each comes back intact and
//!   in order, until done — or, some, until the server ends the
//!   connection. When request bodies stream, the clients that send bodies
//!   (large, trickled, stopped short, `100-continue`, aborting mid-body)
//!   are uploaders.
//!   Every client of a seed that streams keeps response bodies, and checks
//!   a streamed one is exactly the bytes produced, in order, all it
//!   announced (`x-stream`) — short only for a body ended by a close that
//!   may cut (a forced exit, a stalled write). Retries only requests with
//!   no byte of response, on a new connection, at most three times. Each
//!   client's life is one enum (waiting, connected with a turn, done).
//! - [`app`]: answers at once or after a delay up to past the deadline;
//!   checks each request's body against what its client sent. In some seeds
//!   it fails a share of requests — a status outside 200–599, a header value
//!   with CR/LF, or no answer at all (`handle_app_failure`) — and core must
//!   answer each with a token-less 500 in its slot, which the checker and the
//!   client accept as its complete answer (and the report counts in
//!   `requests_completed`). In seeds that stream, it answers some requests
//!   (and every slow reader's) with a streamed body of known or unknown
//!   length, a piece at a time over virtual time, waiting for
//!   `StreamWritable` when core takes less than offered; some producers
//!   stop without ending (only the deadline ends them), some send more or
//!   fewer bytes than declared (core must refuse, and close). It reads
//!   streamed request bodies piecewise against what the client sent,
//!   sometimes slowly (core stops reading meanwhile), sometimes not at all;
//!   and echoes upgraded connections (their sockets are its own once core
//!   says `Upgraded`) until the client's FIN, or shuts its write side on
//!   `StopUpgraded` unless it ignores it — then the deadline cuts.
//! - the successor (in [`world`]): in some seeds the world hands the
//!   listener over (`handle_handoff`) instead of, or after, the terminate;
//!   the successor is another core with its own driver and application,
//!   accepting from the same backlog, checked like the first except for the
//!   drain rules.
//! - [`check`]: the checker — a ledger of what the world saw, and the
//!   judgements below.
//!
//! ## The checks ([`check`])
//! After every step that made a core input (safety):
//! - S1: `check_invariants()` holds and `active_requests() ==
//!   recount_active_requests()`; and, from outside, no more requests are
//!   active than connections open, in HTTP (not upgraded) and not
//!   lingering;
//! - S2/S7: core never holds bytes for a socket with room without having
//!   said `Transmit`, nor wants to read a connection it paused without having
//!   said `ResumeRead` (either would stall until a deadline, where the cut
//!   would look legitimate);
//! - S4: what core writes parses as HTTP/1.1, responses come in request
//!   order, no byte follows a `Connection: close` response, nothing is
//!   written after `HalfClose`; S3: nothing is handed to the application
//!   after the close response, nor behind a request that asked to close
//!   (even ahead of its turn); a request whose first byte core received
//!   after the drain began is answered with `Connection: close`;
//! - S5, S8: no client that did not abort loses owed response bytes to a
//!   reset (or to a close mid-response), nor receives a reset at all, unless
//!   core closed that connection at a forced exit, on a timer (write stall,
//!   first-byte grace, linger with nothing unread), or because linger
//!   exceeded `max_linger_bytes`; core closes a connection whose client may
//!   still be sending only after lingering, but for the reasons that allow
//!   it; the listener closed after the backlog drained (or handed off)
//!   resets nothing;
//! - S6: draining with the listener closed and no connection left means Exit
//!   in this very step; the exit is no later than the deadline;
//! - PreStop (DESIGN, drain phase 2): `is_stopping()` is true, the listener
//!   stays open, no drain close happens, every response the application
//!   gives in it carries `Connection: close` unless core had received bytes
//!   after its request, and none that does drops them (S7: they are a
//!   request its client pipelined before it could see the close);
//! - S9: each close's reason matches what the world saw (idle, silent,
//!   client FIN, abort, deadline, second terminate), an idle connection is
//!   ended within `idle_close_after` of its last response (or at the drain's
//!   start), a silent one within `first_byte_grace` of its accept or the
//!   drain's start, a half-closed one is closed within `linger_timeout`, a
//!   second terminate exits in its step, `CloseListener` before the backlog
//!   only in a forced exit or a hand-off (checked as it happens);
//! - S7: a request cut by a forced exit while core was still receiving it
//!   gets the farewell 503 when its socket has room; the 408 of the header
//!   timeout never comes before it; that of the body timeout never sooner
//!   than `body_read_timeout` after the connection's last byte received.
//!
//! Streams and upgrades, as they happen:
//! - S4: every response head core writes has a framing it may use: a
//!   length, none (`HEAD`, 204, 304, 1xx), chunked only for a streamed
//!   body to HTTP/1.1, ended by the close only for a streamed body to
//!   HTTP/1.0 and with `Connection: close` — so 1.0 never gets chunked;
//!   S7: a streamed response begun during the drain carries `Connection:
//!   close` from its head on, not only once complete;
//! - app contract: `handle_stream_data` and `handle_stream_end` return
//!   what the piece calls for (taken, at most what was offered; refused as
//!   a length mismatch when it crosses the declared length or ends short;
//!   unknown once the connection is gone);
//! - S2: a stream `Finished` calls complete is complete on the wire; a
//!   chunked one it calls unfinished is not (a cut chunked body lacks its
//!   last chunk); a stream counts as completed (report, idle clocks) when
//!   `Finished` says so, not when a length looked satisfied;
//! - core's refusal of a request whose body streams (408, 413, 400) after
//!   it was handed over answers that request in its slot;
//! - `StopUpgraded` is given, in the very step, to every upgraded
//!   connection open when the drain began and every one upgraded during
//!   it — and to no other; an upgraded connection is never active (S1),
//!   never idle or receiving; `UpgradedClosed` only after the application
//!   closed it, which it does only after its client's FIN.
//!
//! At exit, the drain report against what the world saw (report):
//! - `backlog_accepted`, `requests_completed`, `requests_rejected`:
//!   **exact** (accepts made while carrying out `DrainBacklog`; final
//!   responses to handed requests — the application's, or core's 500 for one
//!   it failed — and core's own error responses, whose last byte was handed
//!   to the kernel after the first terminate);
//! - `requests_cut`: exactly the `Finished` events labelled `cut`; 0 unless
//!   forced; when forced, at least the handed requests not completely
//!   written on connections the forced exit closed, at most the active
//!   count before that step;
//! - `handed_off`: exactly whether the listener was handed over;
//! - `upgraded_open`, `upgraded_cut`: exactly the upgraded connections
//!   owed a `StopUpgraded` (or open when a second terminate ended
//!   PreStop), and those a forced exit closed;
//! - S6: an exit not forced leaves no handed request unanswered (a stream
//!   in progress among them) on a connection its client or a timer did not
//!   end;
//! - `silent_closed`, `idle_closed`: exact, from the close reasons;
//! - `reset_risk_closes`: only a bound — connections whose client lost
//!   response bytes in the drain are at most `reset_risk_closes + requests_cut`.
//!
//! At the end (liveness, bounded by terminate, `pre_stop`, `drain_timeout`
//! and 60 s more of virtual time, or 60 s after a client last read a
//! complete response, at most ten minutes later): core exited; every request handed to the
//! application was answered completely, unless its client aborted or its
//! loss is allowed as above (S2); every client finished. On the way, a
//! run fails as a spin when core is handed the same deadline a hundred
//! times in a row (one still due after `handle_timeout` would spin a
//! driver), or after 100,000 steps at one instant. A loop inside one of
//! core's calls never comes back to be counted: core's debug assertions
//! and the wall-clock limit of the fixed seeds' test catch that. Then the
//! ledger:
//!
//! - S7, exactly: every request whose last byte reached the server's socket
//!   (or the socket queued in the backlog) before core half-closed or
//!   closed it has a complete response its client read — unless its client
//!   aborted, a forced exit cut it (the close reason says so), a timer's
//!   close that may lose responses (S5: a linger that gave up while the
//!   client still sent, a stalled write) destroyed its answer, or its
//!   client had pipelined it behind a request answered with `Connection:
//!   close`. That last excuse does not hold when the drain chose the close
//!   although the request had arrived before the drain began and core had
//!   read it by then, nor when PreStop chose it although core had read a
//!   byte of the request: that is dropping pipelined requests. A fifth of
//!   pipelining clients are rude: they ask to close mid-batch and send the
//!   rest behind it anyway (RFC 9112 §9.6 forbids it); what a reset then
//!   costs them is their own loss, and none of it is owed.
//! - S2: when core closes a connection, every request handed over on it
//!   has had its `Finished`.
//! - S2/S8: every response `Finished` says was completely handed over, the
//!   client read (unless a close that may lose responses came first).
//!
//! Known gaps, counted and printed, not failed: requests that arrived
//! before the drain but that core had not read when it chose to close —
//! behind a response PreStop closed with, or queued in the backlog or
//! behind reads paused for pipelining when the drain began, behind a
//! response the drain closed with. Core decides by what it has read, and
//! cannot see the socket's queue; the clients retry them.
//!
//! Core bugs its streaming clients found, fixed with a core test each: an
//! early answer to a streamed-body request that asked to close was closed
//! without lingering; a FIN behind a whole body held back by a full stream
//! buffer dropped the request; a stream ended after its last byte was
//! written put its idle timer out of order. Its body-stopping clients
//! found one more: a request begun from buffered input while a response
//! was still being written left reading paused, so its body timer ran out
//! on a client whose whole body waited unread in the kernel; core's
//! self-check now names that state (a head, body or linger timer while
//! reading is paused). Its lagging driver (`read_lag`) found another: an
//! idle connection's timer closed it while a request waited unread in its
//! socket (core now counts the socket first, `Event::CountUnread`).
//!
//! Judged loosely: a stream ended well after its last byte was written (a
//! 204's, or a declared length met, which some producers never end). Its
//! client, seeing a whole response, may send its next request while core
//! still holds the stream open, so core begins that request later than the
//! client's clock says: the minimum body rate and the body stopper's 408
//! are not judged from the client's side then; core's tests cover it.
//!
//! A lagging driver's bytes: what reached a socket and waits, within
//! `read_lag`, for the driver to read it is the driver's, not yet core's.
//! An idle or silent connection is not late to close while bytes that
//! arrived by its close time wait so (core counted them, and waits); a
//! linger that gives up with such bytes unread may lose its response, as
//! one that gives up on a client still sending may.
//!
//! Not checked: a request whose last byte arrived after core half-closed
//! its connection — one in flight when an idle connection closes is
//! retried by its client (S3 makes that safe), which is HTTP/1.1's
//! inherent race.
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
pub mod env;
pub mod failure;
pub mod kernel;
pub mod knobs;
pub mod request;
pub mod trace;
pub mod world;

pub use failure::Failure;
pub use trace::TraceMode;
pub use world::{run_seed, Outcome};
