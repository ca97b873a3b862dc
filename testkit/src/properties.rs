//! The safety properties every driver of core must observe, numbered so the
//! checks can cite them. They are those of `DESIGN.md` ("Safety properties
//! the simulator must hold on every seed"), in its order:
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
//! Who checks them: the simulator all nine, end to end, against its model of
//! the kernel and clients; the `server_ops` fuzz body S1–S6 and part of S9,
//! as far as a driver can see them (it models no clients, so S7 and S8 come
//! down to S2 and S5); the `request_bytes` fuzz body S1, S2 and S4 on one
//! connection; the [`Harness`](crate::harness::Harness) S1 after every
//! event. Checks cite the number (`// S4`, or `"S4: …"` in a message).
//!
//! S1's check is [`invariants`]: the one each checker makes after every
//! input, together with core's own [`check_invariants`](Server::check_invariants).

use ebb_core::Server;

/// S1, and core's own invariants (timers, buffers, the state each
/// connection's timer implies): what every checker asks after every input.
pub fn invariants(server: &Server) -> Result<(), String> {
    server
        .check_invariants()
        .map_err(|e| format!("S1: core invariant broken: {e}"))?;
    let (active, recount) = (server.active_requests(), server.recount_active_requests());
    if active != recount {
        return Err(format!(
            "S1: active count {active} differs from recount {recount}"
        ));
    }
    Ok(())
}

/// [`invariants`], panicking when they are broken.
#[track_caller]
pub fn assert_invariants(server: &Server) {
    if let Err(e) = invariants(server) {
        panic!("{e}");
    }
}
