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
//! the kernel and clients; the `server_ops` fuzz body S1–S6 and the drain
//! rules below as far as a driver can see them (it models no clients, so S7
//! and S8 come down to what the driver sees: requests whose bytes it passed
//! to core, and how core closes); the `request_bytes` fuzz body S1, S2 and
//! S4 on one connection; the [`Harness`](crate::harness::Harness) S1 after
//! every event. Checks cite the number (`// S4`, or `"S4: …"` in a message).
//!
//! S1's check is [`invariants`]: the one each checker makes after every
//! input, together with core's own [`check_invariants`](Server::check_invariants).
//!
//! ## The drain rules, stated once
//!
//! The functions below turn S2 and S5–S9 into rules about core's inputs and
//! outputs that a driver can check; the simulator and `server_ops` both call
//! them.
//!
//! - When a connection must be ended in the drain: [`idle_close_due`],
//!   [`silent_close_due`], and then closed: [`linger_close_due`] (S9).
//! - Which closes may skip lingering although the client may still be
//!   sending: [`may_close_without_linger`] (S5, S8).
//! - Which closes may cost a client responses or requests it was owed:
//!   [`close_may_lose`] (S2, S7, S8).
//! - When `CloseListener` may come before the backlog was drained:
//!   [`early_listener_close_ok`] (S8, S9).
//! - Which inputs must end in `Exit` in the same step: [`must_exit_at_once`]
//!   (S6, S9).
//! - Which responses must carry `Connection: close`: [`response_must_close`]
//!   (S7, and DESIGN's drain phases 2 and 3).
//! - The drain report's times and what a forced exit cut: [`exit_report`]
//!   (S2, S6).

use ebb_core::{CloseReason, Config, DrainReport, Forced, Reject, Server, Time};

/// S1, and core's own invariants (timers, buffers, the state each
/// connection's timer implies): what every checker asks after every input.
/// Core's self-check begins by comparing the active count with a recount of
/// the connection table (S1), so this recounts once.
pub fn invariants(server: &Server) -> Result<(), String> {
    server
        .check_invariants()
        .map_err(|e| format!("S1: core invariant broken: {e}"))
}

/// [`invariants`], panicking when they are broken.
#[track_caller]
pub fn assert_invariants(server: &Server) {
    if let Err(e) = invariants(server) {
        panic!("{e}");
    }
}

/// S9: the latest moment an idle keep-alive connection may still be open
/// (not yet half-closed) in the drain: `idle_close_after` after its last
/// response was completely written, or the drain's start if that passed
/// before it.
pub fn idle_close_due(last_active: Time, drain_start: Time, config: &Config) -> Time {
    (last_active + config.idle_close_after).max(drain_start)
}

/// S9: the latest moment a connection that never began a request may still
/// be open in the drain: `first_byte_grace` after its accept or the drain's
/// start, whichever is later — never past the drain deadline.
pub fn silent_close_due(
    accepted: Time,
    drain_start: Time,
    deadline: Time,
    config: &Config,
) -> Time {
    (accepted.max(drain_start) + config.first_byte_grace).min(deadline)
}

/// S9: the latest moment a half-closed (lingering) connection is closed.
pub fn linger_close_due(half_closed: Time, config: &Config) -> Time {
    half_closed + config.linger_timeout
}

/// S5, S8: whether core may close a connection at once, without
/// half-closing it and lingering first, while the client may still be
/// sending (core has not seen its FIN). A close with input in flight
/// resets the client, destroying what it had not read — so only for a
/// client that reset or asked to close (and sends nothing more, RFC 9112
/// §9.6), one that never sent a byte, a write that stalled, a linger that
/// gave up, and a forced exit.
pub fn may_close_without_linger(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::Aborted
            | CloseReason::ClientAsked
            | CloseReason::FirstByteGrace
            | CloseReason::NewConnectionTimeout
            | CloseReason::WriteStall
            | CloseReason::LingerTimeout
            | CloseReason::LingerOverflow
    ) || reason.is_forced()
}

/// S2, S7, S8: whether a close for `reason` may cost a client that did not
/// abort a response it was owed or a request it had sent: a forced exit
/// (the deadline, a second terminate), a stalled write, a linger that gave
/// up, a silent connection's timer. Every other close comes after every
/// response owed was written, and (S5) through lingering.
pub fn close_may_lose(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::WriteStall
            | CloseReason::LingerOverflow
            | CloseReason::LingerTimeout
            | CloseReason::FirstByteGrace
            | CloseReason::NewConnectionTimeout
            | CloseReason::Rejected(
                Reject::HeadTimeout | Reject::BodyTimeout | Reject::BodyTooSlow
            )
    ) || reason.is_forced()
}

/// S2, S6: whether a close for `reason` may end a streamed response the
/// application has not ended: the client reset, the write stalled, the
/// application broke the body's declared length, or the exit was forced.
/// Nothing else ends a stream, so one keeps the drain from exiting until
/// it ends or the deadline.
pub fn stream_may_be_cut(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::Aborted | CloseReason::WriteStall | CloseReason::StreamMismatch
    ) || reason.is_forced()
}

/// S6: whether a close for `reason` may end a connection that left HTTP
/// (an upgrade), the application having closed it (`app_closed`) or not:
/// only the application's close, or a forced exit (the deadline), which
/// the report counts as `upgraded_cut`.
pub fn upgraded_close_ok(reason: CloseReason, app_closed: bool) -> bool {
    (app_closed && reason == CloseReason::UpgradedClosed) || reason.is_forced()
}

/// S8, S9: whether `CloseListener` may come before the backlog was drained
/// (`DrainBacklog` carried out and `handle_backlog_empty` made): only when
/// the listener was handed to a successor (the backlog is its now), or in
/// the input that forces the exit.
pub fn early_listener_close_ok(handed_off: bool, forcing: bool) -> bool {
    handed_off || forcing
}

/// S6, S9: whether the input just made must have ended in `Exit`: a
/// terminate that came while the server was already stopping (PreStop or
/// draining: a second stop request), or any input after which a draining
/// server has its listener closed and no connection left.
pub fn must_exit_at_once(
    terminate_while_stopping: bool,
    draining: bool,
    listener_closed: bool,
    connections: usize,
) -> bool {
    terminate_while_stopping || (draining && listener_closed && connections == 0)
}

/// S7, DESIGN's drain phases 2 and 3: whether a response must carry
/// `Connection: close`: one the application gave in PreStop while core had
/// received nothing after its request (clients leave before the drain; a
/// request pipelined behind it is answered first, as in the drain), and one
/// to a request whose first byte core received after the drain began (its
/// client has nothing more that the drain could lose).
///
/// `pre_stop_alone`: answered in PreStop, with core holding no byte after
/// the request. (Core takes empty lines behind a request for none; the
/// checkers' clients send none there, so a byte behind is a request.)
pub fn response_must_close(pre_stop_alone: bool, begun_in_drain: bool) -> bool {
    pre_stop_alone || begun_in_drain
}

/// S7 in PreStop: whether a response in PreStop closed its connection
/// although core had received bytes after its request (`read_past_it`),
/// dropping a request its client pipelined before it could see the close.
/// A close the response needs for its own sake, or that its client asked
/// for, is not PreStop's (`inherent`).
pub fn pre_stop_dropped_pipelined(
    answered_in_pre_stop: bool,
    read_past_it: bool,
    close: bool,
    inherent: bool,
) -> bool {
    answered_in_pre_stop && read_past_it && close && !inherent
}

/// S2, S6: the drain report `r` emitted at `now`, against `config`:
/// the phases in order; exit no later than the drain deadline (and so than
/// terminate + `pre_stop` + `drain_timeout`); an exit forced by the
/// deadline exactly at it; requests cut only in a forced exit, and then
/// `cut` — the [`Finished`](ebb_core::Finished) events labelled `cut` —
/// exactly `requests_cut`.
///
/// `late` is for a driver that may wake after a deadline: the time of its
/// input before this one. Then exit may come after the deadline, at the
/// first input past it, and the end of PreStop may have been late too.
/// `None` for a driver that wakes exactly at each deadline.
pub fn exit_report(
    r: &DrainReport,
    config: &Config,
    now: Time,
    cut: u64,
    late: Option<Time>,
) -> Result<(), String> {
    // Past `bound`, unless this is a late driver's first input after it.
    let past = |bound: Time| r.exited_at > bound && late.map_or(true, |prev| prev >= bound);
    if r.exited_at != now {
        return Err(format!("S6: Exit says {:?} but it is {now:?}", r.exited_at));
    }
    for (what, t) in [
        ("draining", r.draining_at),
        ("listener closed", r.listener_closed_at),
    ] {
        if let Some(t) = t {
            if t < r.terminated_at || t > r.exited_at {
                return Err(format!(
                    "S6: {what} at {t:?}, outside terminate {:?} .. exit {:?}",
                    r.terminated_at, r.exited_at
                ));
            }
        }
    }
    if late.is_none() && r.exited_at > r.terminated_at + config.pre_stop + config.drain_timeout {
        return Err(format!(
            "S6: exit at {:?}, after terminate + pre_stop + drain_timeout",
            r.exited_at
        ));
    }
    if let Some(d) = r.draining_at {
        if past(d + config.drain_timeout) {
            return Err(format!(
                "S6: exit at {:?}, past the drain deadline",
                r.exited_at
            ));
        }
        if r.forced == Some(Forced::Deadline)
            && (r.exited_at < d + config.drain_timeout || past(d + config.drain_timeout))
        {
            return Err(format!(
                "S6: forced by the deadline at {:?}, not at the deadline",
                r.exited_at
            ));
        }
    }
    if r.forced.is_none() && r.requests_cut != 0 {
        return Err(format!(
            "S2: drain completed but requests_cut {}",
            r.requests_cut
        ));
    }
    if r.requests_cut != cut {
        return Err(format!(
            "S2: report requests_cut {} but {cut} requests finished as cut",
            r.requests_cut
        ));
    }
    Ok(())
}
