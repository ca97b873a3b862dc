//! The application: answers at once, or after a delay that may pass the
//! drain deadline (so answers come out of order across connections). Every
//! request it gets is checked against what its client sent, and recorded.

use ebb_core::{Bytes, RequestId, RespondError};

use crate::check::Handed;
use crate::http;
use crate::trace;
use crate::world::{Cause, Ev, World};

impl World {
    /// `Event::Request`: read the request, check it, answer now or later.
    pub fn app_request(&mut self, id: RequestId) {
        let Some(k) = self.by_id.get(&id.conn()).copied() else {
            self.fail(format!("Request {id:?} on a connection the driver closed"));
            return;
        };
        let Some(req) = self.server.request(id) else {
            self.fail(format!("Request {id:?} that core cannot show"));
            return;
        };
        let path = req.path().to_owned();
        let body = req.body().to_vec();
        let Some((ci, no, attempt)) = path
            .strip_prefix("/r/")
            .and_then(http::parse_token)
            .filter(|&(ci, no, _)| ci < self.clients.len() && no < self.clients[ci].reqs.len())
        else {
            self.fail(format!(
                "k{k}: the application got a request no client sent: {path:?}"
            ));
            return;
        };
        let want = &self.clients[ci].reqs[no];
        if ci != self.conns[k].client || want.garbage {
            self.fail(format!(
                "k{k}: request {path} arrived on another client's connection"
            ));
            return;
        }
        if !http::is_body(no, want.shape.body_len, &body) {
            self.fail(format!(
                "k{k}: request {path} body corrupted ({} bytes)",
                body.len()
            ));
            return;
        }
        let raw_len = want.raw_len;
        let obs = &self.conns[k].obs;
        if obs.closed_resp || self.conns[k].wr_shut {
            self.fail(format!("k{k}: request {path} handed to the application after the connection's close response"));
            return;
        }
        let tok = http::token(ci, no, attempt);
        trace!(self, "app got {tok} on k{k} ({} body bytes)", body.len());
        let obs = &mut self.conns[k].obs;
        obs.handed.push_back((id, tok.clone(), obs.handed_bytes));
        obs.handed_bytes += raw_len;
        self.stats.handed += 1;
        let fault = self
            .rng
            .percent(self.knobs.app_fault_percent)
            .then(|| Fault::ALL[self.rng.below(Fault::ALL.len() as u64) as usize]);
        if let Some(f) = fault {
            trace!(self, "app will fail {tok}: {f:?}");
            self.clients[ci].reqs[no].fault_attempt = Some(attempt);
        }
        self.ledger.handed.insert(
            id,
            Handed {
                k,
                client: ci,
                no,
                attempt,
                fault,
                sent_fully: false,
            },
        );
        if self.rng.percent(self.knobs.app_instant_percent) {
            self.app_answer(id);
        } else {
            let d = self.rng.upto(self.knobs.app_delay);
            self.after(d, Ev::AppAnswer(id));
        }
    }

    /// The application answers `id` (status 200, or now and then 204 without
    /// a body; its token in `x-req`).
    pub fn app_answer(&mut self, id: RequestId) {
        let Some(h) = self.ledger.handed.get(&id) else {
            return;
        };
        let tok = http::token(h.client, h.no, h.attempt);
        if let Some(fault) = h.fault {
            return self.app_fail(id, tok, fault);
        }
        let len = if self.rng.percent(self.knobs.large_response_percent) {
            self.rng.size(16 * 1024, 64 * 1024)
        } else {
            self.rng.size(0, 200)
        };
        let status = if self.rng.percent(5) { 204 } else { 200 };
        let mut body = tok.clone().into_bytes();
        body.resize(body.len() + len, b'.');
        let live = self.server.request(id).is_some();
        let mut result = Ok(());
        trace!(self, "core input respond {tok} ({} bytes)", body.len());
        self.input(Cause::Response, |s, now| {
            result = s.handle_response(
                id,
                status,
                [("x-req", tok.as_bytes())],
                Bytes::from(body),
                now,
            )
        });
        if live && result.is_err() {
            self.fail(format!(
                "handle_response refused the answer to live request {id:?}: {result:?}"
            ));
        }
    }
}

/// How the application fails a request; core answers 500 in its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A status outside 200–599.
    BadStatus,
    /// A header value with CR or LF.
    BadHeader,
    /// No answer at all: the handler panicked, or dropped its responder.
    Dropped,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::BadStatus, Fault::BadHeader, Fault::Dropped];
}

impl World {
    /// The application fails `id` in the way it chose when it got it.
    fn app_fail(&mut self, id: RequestId, tok: String, fault: Fault) {
        let live = self.server.request(id).is_some();
        trace!(self, "core input app fault {tok} ({fault:?})");
        let (status, value): (u16, &[u8]) = match fault {
            Fault::BadStatus if self.rng.percent(50) => (99, b"ok"),
            Fault::BadStatus => (600, b"ok"),
            Fault::BadHeader => (200, b"split\r\nx-evil: 1"),
            Fault::Dropped => {
                self.input(Cause::Response, |s, now| s.handle_app_failure(id, now));
                return;
            }
        };
        // `None`: core has exited, and no input was made.
        let mut result = None;
        self.input(Cause::Response, |s, now| {
            result = Some(s.handle_response(
                id,
                status,
                [("x-req", tok.as_bytes()), ("x-note", value)],
                Bytes::from_static(b"never sent"),
                now,
            ))
        });
        let Some(result) = result else { return };
        let want = match (live, fault) {
            (false, _) => RespondError::UnknownRequest,
            (true, Fault::BadStatus) => RespondError::InvalidStatus,
            (true, _) => RespondError::InvalidHeader,
        };
        if result != Err(want) {
            self.fail(format!(
                "handle_response for {tok} ({fault:?}, live {live}) returned {result:?}, not {want:?}"
            ));
        }
    }
}
