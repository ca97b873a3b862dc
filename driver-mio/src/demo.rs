//! The `ebb` binary's built-in app: a greeting, a deferred answer, an echo and
//! a readiness route.
//!
//! - `GET /` → 200 `Hello, World!`
//! - `GET /sleep?ms=N` → 200 after N ms (at most an hour), answered from a
//!   timer thread through the deferred [`Responder`]: the worker never waits
//! - `POST /echo` → 200 with the request body
//! - `GET /healthz` → 200 while serving, 503 once stopping
//! - one of these paths with another method → 405, with `Allow` listing the
//!   methods the path answers (`HEAD` wherever `GET` is)
//! - any other path → 404

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ebb_mio::{Bytes, Handler, Request, Responder, Response};

/// Longest `/sleep` accepted.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The demo app. Owns the timer thread that answers `/sleep`.
pub struct Demo {
    timer: Timer,
}

impl Demo {
    /// The app, with its timer thread started.
    pub fn new() -> std::io::Result<Demo> {
        Ok(Demo {
            timer: Timer::new()?,
        })
    }
}

impl Handler for Demo {
    fn call(&self, req: &Request<'_>, res: Responder) {
        let response = match route(req.method(), req.path()) {
            Err(miss) => miss.response(),
            Ok(Route::Hello) => Response::text(200, "Hello, World!"),
            Ok(Route::Healthz) if res.is_stopping() => Response::text(503, "stopping\n"),
            Ok(Route::Healthz) => Response::text(200, "ok\n"),
            Ok(Route::Echo) => Response::new(200)
                .content_type("application/octet-stream")
                .body(Bytes::copy_from_slice(req.body())),
            Ok(Route::Sleep) => match sleep_ms(req.query()) {
                Some(delay) => return self.timer.after(delay, res, Response::text(200, "slept\n")),
                None => Response::text(400, "expected /sleep?ms=N\n"),
            },
        };
        res.respond(response);
    }
}

/// A path the demo answers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Route {
    Hello,
    Sleep,
    Echo,
    Healthz,
}

impl Route {
    fn from_path(path: &str) -> Option<Route> {
        match path {
            "/" => Some(Route::Hello),
            "/sleep" => Some(Route::Sleep),
            "/echo" => Some(Route::Echo),
            "/healthz" => Some(Route::Healthz),
            _ => None,
        }
    }

    /// The methods it answers, written as a 405's `Allow` lists them.
    fn allow(self) -> &'static str {
        match self {
            Route::Echo => "POST",
            Route::Hello | Route::Sleep | Route::Healthz => "GET, HEAD",
        }
    }
}

/// Why a request names no route.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Miss {
    /// An unknown path: 404.
    NotFound,
    /// A known path asked with a method it does not answer: 405, whose
    /// `Allow` tells the client what it may send instead.
    WrongMethod { allow: &'static str },
}

impl Miss {
    fn response(self) -> Response {
        match self {
            Miss::NotFound => Response::text(404, "Not Found\n"),
            Miss::WrongMethod { allow } => {
                Response::text(405, "Method Not Allowed\n").header("Allow", allow)
            }
        }
    }
}

/// The route a request names.
fn route(method: &str, path: &str) -> Result<Route, Miss> {
    let route = Route::from_path(path).ok_or(Miss::NotFound)?;
    let allow = route.allow();
    if allow
        .split(',')
        .any(|allowed| allowed.trim_start() == method)
    {
        Ok(route)
    } else {
        Err(Miss::WrongMethod { allow })
    }
}

/// The `ms` parameter of `/sleep`, bounded by [`MAX_SLEEP`].
fn sleep_ms(query: Option<&str>) -> Option<Duration> {
    let ms = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))?
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_millis(ms).min(MAX_SLEEP))
}

/// One thread answering responders at their due time, earliest first.
struct Timer {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    due: BinaryHeap<Due>,
    next_seq: u64,
    closed: bool,
}

/// An answer to give at `at`; ordered so the heap's top is the earliest.
struct Due {
    at: Instant,
    seq: u64,
    responder: Responder,
    response: Response,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Due) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl Timer {
    fn new() -> std::io::Result<Timer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                due: BinaryHeap::new(),
                next_seq: 0,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("ebb-demo-timer".to_owned())
            .spawn(move || run_timer(&thread_shared))?;
        Ok(Timer { shared })
    }

    fn after(&self, delay: Duration, responder: Responder, response: Response) {
        let mut state = lock(&self.shared.state);
        let seq = state.next_seq;
        state.next_seq += 1;
        state.due.push(Due {
            at: Instant::now() + delay,
            seq,
            responder,
            response,
        });
        self.shared.wake.notify_one();
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_timer(shared: &Shared) {
    let mut state = lock(&shared.state);
    loop {
        if state.closed {
            return;
        }
        let now = Instant::now();
        match state.due.peek().map(|d| d.at) {
            Some(at) if at <= now => {
                let due = state.due.pop().expect("peeked");
                drop(state);
                due.responder.respond(due.response);
                state = lock(&shared.state);
            }
            Some(at) => {
                state = shared
                    .wake
                    .wait_timeout(state, at - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            None => state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_path_with_another_method_is_405_listing_the_allowed_ones() {
        let get = Err(Miss::WrongMethod { allow: "GET, HEAD" });
        assert_eq!(route("POST", "/"), get);
        assert_eq!(route("DELETE", "/healthz"), get);
        assert_eq!(route("POST", "/sleep"), get);
        assert_eq!(
            route("GET", "/echo"),
            Err(Miss::WrongMethod { allow: "POST" })
        );
    }

    #[test]
    fn allowed_methods_route_and_unknown_paths_are_404() {
        assert_eq!(route("GET", "/"), Ok(Route::Hello));
        assert_eq!(route("HEAD", "/healthz"), Ok(Route::Healthz));
        assert_eq!(route("POST", "/echo"), Ok(Route::Echo));
        assert_eq!(route("GET", "/sleep"), Ok(Route::Sleep));
        assert_eq!(route("POST", "/nope"), Err(Miss::NotFound));
    }
}
