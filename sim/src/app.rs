//! The application: answers at once, or after a delay that may pass the
//! drain deadline (so answers come out of order across connections). Every
//! request it gets is checked against what its client sent. In some seeds it
//! fails a share of requests — an invalid response, or none at all — and core
//! must answer those with 500 in their place.

use std::collections::BTreeMap;
use std::time::Duration;

use ebb_core::{Bytes, Request, RequestId, RespondError};

use crate::client::Clients;
use crate::env::Env;
use crate::failure::Failure;
use crate::knobs::Knobs;
use crate::request;
use crate::trace;

/// How the application fails a request; core answers 500 in its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A status outside 200–599.
    BadStatus,
    /// A header value with CR and LF.
    BadHeader,
    /// No answer at all: the handler panicked, or dropped its responder
    /// (`handle_app_failure`).
    Dropped,
}

impl Fault {
    const ALL: [Fault; 3] = [Fault::BadStatus, Fault::BadHeader, Fault::Dropped];
}

/// A request the application accepted: whose it is and how it will answer.
#[derive(Clone, Debug)]
pub struct Got {
    pub client: usize,
    pub no: usize,
    pub attempt: u32,
    pub token: String,
    /// Bytes its client wrote for it (head and framed body).
    pub raw_len: usize,
    /// How the application will fail it, if it will.
    pub fault: Option<Fault>,
    /// When it answers: now, or after this delay.
    pub delay: Option<Duration>,
}

/// What the application gives core for one request.
#[derive(Clone, Debug)]
pub struct Answer {
    pub token: String,
    /// `None`: no answer at all (`handle_app_failure`).
    pub response: Option<Response>,
    pub fault: Option<Fault>,
}

/// A response, valid or not.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    pub body: Bytes,
}

impl Answer {
    /// What `handle_response` must return for this answer, given whether the
    /// request still waited for one (`live`).
    pub fn expected(&self, live: bool) -> Result<(), RespondError> {
        match (live, self.fault) {
            (false, _) if self.response.is_some() => Err(RespondError::UnknownRequest),
            (_, Some(Fault::BadStatus)) => Err(RespondError::InvalidStatus),
            (_, Some(Fault::BadHeader)) => Err(RespondError::InvalidHeader),
            _ => Ok(()),
        }
    }
}

/// The application: the requests it holds, and how it answers.
pub struct App {
    /// By request: its token, its fault, and whether it wants a large body.
    holding: BTreeMap<RequestId, (String, Option<Fault>, bool)>,
    instant_percent: u64,
    delay: Duration,
    large_percent: u64,
    fault_percent: u64,
    handed: u64,
}

impl App {
    /// An application shaped by `knobs`.
    pub fn new(knobs: &Knobs) -> App {
        App {
            holding: BTreeMap::new(),
            instant_percent: knobs.app_instant_percent,
            delay: knobs.app_delay,
            large_percent: knobs.large_response_percent,
            fault_percent: knobs.app_fault_percent,
            handed: 0,
        }
    }

    /// Requests core handed to the application.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// `Event::Request`: checks the request core shows against what client
    /// `owner` (who made connection `k`) sent, and decides how and when to
    /// answer. `None` when the request is not one a client sent (a failure).
    pub fn receive(
        &mut self,
        id: RequestId,
        k: usize,
        owner: usize,
        req: Request<'_>,
        clients: &Clients,
        env: &mut Env,
    ) -> Option<Got> {
        let path = req.path();
        let body = req.body();
        let Some((client, no, attempt)) = path
            .strip_prefix("/r/")
            .and_then(request::parse_token)
            .filter(|&(ci, no, _)| clients.req(ci, no).is_some())
        else {
            env.fail(Failure::Safety(format!(
                "integrity: k{k}: the application got a request no client sent: {path:?}"
            )));
            return None;
        };
        let want = clients.req(client, no).expect("filtered above");
        if client != owner || want.garbage {
            env.fail(Failure::Safety(format!(
                "integrity: k{k}: request {path} arrived on another client's connection"
            )));
            return None;
        }
        if !request::is_body(no, want.shape.body_len, body) {
            env.fail(Failure::Safety(format!(
                "integrity: k{k}: request {path} body corrupted ({} bytes)",
                body.len()
            )));
            return None;
        }
        let token = request::token(client, no, attempt);
        trace!(env, "app got {token} on k{k} ({} body bytes)", body.len());
        self.handed += 1;
        let fault = env
            .rng
            .percent(self.fault_percent)
            .then(|| Fault::ALL[env.rng.below(Fault::ALL.len() as u64) as usize]);
        if let Some(f) = fault {
            trace!(env, "app will fail {token}: {f:?}");
        }
        let delay = (!env.rng.percent(self.instant_percent)).then(|| env.rng.upto(self.delay));
        self.holding
            .insert(id, (token.clone(), fault, want.shape.big_response));
        Some(Got {
            client,
            no,
            attempt,
            token,
            raw_len: want.raw_len,
            fault,
            delay,
        })
    }

    /// The answer to `id` (status 200, or now and then 204 without a body;
    /// its token in `x-req`) — or the failure chosen for it.
    pub fn answer(&mut self, id: RequestId, env: &mut Env) -> Option<Answer> {
        let (token, fault, big) = self.holding.remove(&id)?;
        let response = match fault {
            None => {
                let len = if big || env.rng.percent(self.large_percent) {
                    env.rng.size(16 * 1024, 64 * 1024)
                } else {
                    env.rng.size(0, 200)
                };
                let status = if !big && env.rng.percent(5) { 204 } else { 200 };
                let mut body = token.clone().into_bytes();
                body.resize(body.len() + len, b'.');
                Some(Response {
                    status,
                    headers: vec![("x-req", token.clone().into_bytes())],
                    body: Bytes::from(body),
                })
            }
            Some(Fault::BadStatus) => Some(Response {
                status: if env.rng.percent(50) { 99 } else { 600 },
                headers: vec![("x-req", token.clone().into_bytes())],
                body: Bytes::from_static(b"never sent"),
            }),
            Some(Fault::BadHeader) => Some(Response {
                status: 200,
                headers: vec![
                    ("x-req", token.clone().into_bytes()),
                    ("x-note", b"split\r\nx-evil: 1".to_vec()),
                ],
                body: Bytes::from_static(b"never sent"),
            }),
            Some(Fault::Dropped) => None,
        };
        Some(Answer {
            token,
            response,
            fault,
        })
    }
}
