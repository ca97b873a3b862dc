//! The `ebb` binary's built-in app: a greeting, a deferred answer, an echo, a
//! readiness route, streamed bodies and an upgrade.
//!
//! - `GET /` → 200 `Hello, World!`
//! - `GET /sleep?ms=N` → 200 after N ms (at most an hour), answered from a
//!   timer thread through the deferred [`Responder`]: the worker never waits
//! - `POST /echo` → 200 with the request body (up to `--max-body`; over
//!   it, 413), read by a thread of its own: bodies stream to the demo
//! - `POST /upload` → 200 `bytes=N fnv1a=HEX`: the streamed body's length
//!   and FNV-1a 64 checksum, read by a thread of its own, of any size, in
//!   bounded memory; `/upload?hash=0` → `bytes=N` only (for benchmarks:
//!   FNV-1a runs at about a byte per nanosecond)
//! - `GET /healthz` → 200 while serving, 503 once stopping
//! - `GET /stream?bytes=N&chunk=K` → 200 with N bytes (default 1 MiB) of
//!   [`pattern`] in writes of K bytes (default 64 KiB), of unknown length
//!   (chunked), written by a thread of its own with blocking writes
//! - `GET /sse?events=N&interval_ms=M` → 200 `text/event-stream`: N events
//!   (default 10), M ms apart (default 1000), from a thread of its own. It
//!   sends all N even while the server stops: the drain waits for it, and
//!   the drain deadline cuts it.
//! - `GET /upgrade` with `Connection: upgrade` and `Upgrade: echo` → 101,
//!   then every byte sent is echoed, by a thread per connection, until the
//!   client closes or the drain begins (which closes it);
//!   `/upgrade?ignore_stop=1` echoes on through the drain until the deadline
//!   cuts it. Without `Upgrade: echo` → 426.
//! - one of these paths with another method → 405, with `Allow` listing the
//!   methods the path answers (`HEAD` wherever `GET` is)
//! - any other path → 404
//! - a method that is none of RFC 9110's or PATCH → 501, whatever the path

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ebb_mio::{
    BodyLength, BodyReader, BodyWriter, Bytes, Handler, Request, Responder, Response, Upgraded,
};

/// Longest `/sleep` accepted.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The demo app. Owns the timer thread that answers `/sleep`.
pub struct Demo {
    timer: Timer,
    /// Longest body `/echo` answers (`--max-body`).
    max_echo_bytes: u64,
    /// How long an upgraded echo waits on a quiet client, or on one that
    /// reads none of what it sent, before it closes the connection: each
    /// holds a thread, and nothing else would end one left open.
    echo_idle: Duration,
}

impl Demo {
    /// The app, with its timer thread started; `/echo` answers bodies of up
    /// to `max_echo_bytes`, and an upgraded echo closes after `echo_idle`
    /// without progress.
    pub fn new(max_echo_bytes: u64, echo_idle: Duration) -> std::io::Result<Demo> {
        Ok(Demo {
            timer: Timer::new()?,
            max_echo_bytes,
            echo_idle,
        })
    }

    /// Answers with `response`, once a streamed body the route does not use
    /// is read (up to the limit): an answer before it would close the
    /// connection.
    fn answer(&self, mut res: Responder, response: Response) {
        let body = res.body();
        if body.request_id().is_some() {
            let limit = self.max_echo_bytes;
            return spawn("ebb-demo-read", move || {
                discard_then(body, limit, res, response)
            });
        }
        res.respond(response);
    }
}

impl Handler for Demo {
    fn call(&self, req: &Request<'_>, mut res: Responder) {
        let response = match route(req.method(), req.path()) {
            // A client waiting for `100 Continue` hears the refusal instead,
            // and need not send the body that reading it would ask for.
            Err(miss) if req.expects_continue() => return res.respond(miss.response()),
            Err(miss) => miss.response(),
            // Answered in its arm, so the response is built where `answer`
            // takes it, not gathered from the arms and moved (the benchmark's
            // route: some 30 instructions).
            Ok(Route::Hello) => return self.answer(res, Response::text(200, "Hello, World!")),
            // The methods some route answers.
            Ok(Route::Server) => Response::new(200).header("Allow", "GET, HEAD, POST, OPTIONS"),
            Ok(Route::Healthz) if res.is_stopping() => Response::text(503, "stopping\n"),
            Ok(Route::Healthz) => Response::text(200, "ok\n"),
            // A body announced too long is refused before it is read: the
            // client is not left to upload it only to hear 413 after.
            Ok(Route::Echo) if announced_length(req).is_some_and(|n| n > self.max_echo_bytes) => {
                return res.respond(Response::text(413, "Content Too Large\n"));
            }
            Ok(Route::Echo) if req.body().is_empty() => {
                let (body, limit) = (res.body(), self.max_echo_bytes);
                return spawn("ebb-demo-read", move || echo_body(body, limit, res));
            }
            Ok(Route::Echo) => Response::new(200)
                .content_type("application/octet-stream")
                .body(Bytes::copy_from_slice(req.body())),
            // Bodies come whole (`--whole-bodies`).
            Ok(Route::Upload) => {
                let hashing = req.query_param("hash").as_deref() != Some("0");
                if !req.body().is_empty() {
                    // Bodies come whole (`--whole-bodies`).
                    let body = req.body();
                    Response::text(
                        200,
                        upload_summary(body.len() as u64, hashing.then(|| fnv1a(FNV_OFFSET, body))),
                    )
                } else {
                    let body = res.body();
                    return spawn("ebb-demo-read", move || count_upload(body, hashing, res));
                }
            }
            Ok(Route::Sleep) => match sleep_ms(req.query()) {
                Some(delay) => return self.timer.after(delay, res, Response::text(200, "slept\n")),
                None => Response::text(400, "expected /sleep?ms=N\n"),
            },
            Ok(Route::Stream) => match stream_params(req) {
                Some(_) if req.method() == "HEAD" => {
                    return finish(res.stream(stream_head(), BodyLength::Unknown));
                }
                Some((bytes, chunk)) => {
                    let body = res.stream(stream_head(), BodyLength::Unknown);
                    return spawn("ebb-demo-stream", move || send_pattern(body, bytes, chunk));
                }
                None => Response::text(
                    400,
                    "expected /stream?bytes=N&chunk=K (K from 1 to 256 KiB)\n",
                ),
            },
            Ok(Route::Sse) => match sse_params(req) {
                Some((events, interval)) => {
                    let head = Response::new(200)
                        .content_type("text/event-stream")
                        .header("Cache-Control", "no-cache");
                    let body = res.stream(head, BodyLength::Unknown);
                    return spawn("ebb-demo-sse", move || send_events(body, events, interval));
                }
                None => Response::text(400, "expected /sse?events=N&interval_ms=M\n"),
            },
            Ok(Route::Upgrade) if !(req.wants_upgrade() && offers_echo(req)) => {
                Response::text(426, "expected Connection: upgrade and Upgrade: echo\n")
                    .header("Upgrade", "echo")
            }
            Ok(Route::Upgrade) => {
                let ignore_stop = req.query_param("ignore_stop").is_some_and(|v| v == "1");
                let pending = res.upgrade([("Upgrade", "echo")]);
                let idle = self.echo_idle;
                return spawn("ebb-demo-echo", move || {
                    // The connection closed before the 101 was written: nothing to echo.
                    if let Ok(upgraded) = pending.wait() {
                        echo(upgraded, ignore_stop, idle);
                    }
                });
            }
        };
        self.answer(res, response);
    }
}

/// The body length `Content-Length` announces, if it does.
fn announced_length(req: &Request<'_>) -> Option<u64> {
    req.header_str("content-length")?.parse().ok()
}

/// Reads `body` to its end, up to `limit` bytes, then answers with `response`
/// (which closes the connection if the body was longer).
fn discard_then(mut body: BodyReader, limit: u64, res: Responder, response: Response) {
    if let Err(e) = std::io::copy(&mut body.by_ref().take(limit), &mut std::io::sink()) {
        return log::debug!("unused body: {e}");
    }
    res.respond(response);
}

/// Answers `/echo` with the body read whole from `body`: 413 if it is
/// longer than `limit`.
fn echo_body(mut body: BodyReader, limit: u64, res: Responder) {
    let response = match body.read_to_end(limit) {
        Ok(bytes) => Response::new(200)
            .content_type("application/octet-stream")
            .body(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Response::text(413, "Content Too Large\n")
        }
        Err(e) => return log::debug!("echo body: {e}"),
    };
    res.respond(response);
}

/// Answers `/upload` with the length of `body`, and its FNV-1a 64 checksum
/// if `hashing`.
fn count_upload(mut body: BodyReader, hashing: bool, res: Responder) {
    let mut buf = vec![0; 64 * 1024];
    let mut bytes = 0u64;
    let mut hash = FNV_OFFSET;
    loop {
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes += n as u64;
                if hashing {
                    hash = fnv1a(hash, &buf[..n]);
                }
            }
            // The connection is gone: nobody to answer.
            Err(e) => return log::debug!("upload body: {e}"),
        }
    }
    let summary = upload_summary(bytes, hashing.then_some(hash));
    res.respond(Response::text(200, summary));
}

/// The body of `/upload`'s answer.
fn upload_summary(bytes: u64, hash: Option<u64>) -> String {
    match hash {
        Some(hash) => format!("bytes={bytes} fnv1a={hash:016x}\n"),
        None => format!("bytes={bytes}\n"),
    }
}

/// FNV-1a 64's offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 of `bytes`, continuing from `hash`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Runs `work` on a thread of its own; if none can be made, the stream or
/// connection it held is dropped, which ends it as broken.
fn spawn(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
    {
        log::error!("cannot start a {name} thread: {e}");
    }
}

fn finish(body: BodyWriter) {
    if let Err(e) = body.finish() {
        log::debug!("stream not finished: {e}");
    }
}

/// The body of `/stream`: byte `i` of a stream is `pattern()[i % 64]`.
pub fn pattern() -> &'static [u8; 64] {
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"
}

/// The largest write `/stream` makes: the default stream buffer, which a
/// larger write would fill in pieces anyway. Each stream holds a buffer of
/// about this size, and a client must not choose how much memory that is.
const MAX_CHUNK: usize = 256 << 10;

fn stream_head() -> Response {
    Response::new(200).content_type("application/octet-stream")
}

/// `bytes` (default 1 MiB) and `chunk` (default 64 KiB) of `/stream`.
fn stream_params(req: &Request<'_>) -> Option<(u64, usize)> {
    let bytes = match req.query_param("bytes") {
        Some(n) => n.parse().ok()?,
        None => 1 << 20,
    };
    let chunk = match req.query_param("chunk") {
        Some(n) => n.parse().ok()?,
        None => 64 << 10,
    };
    (1..=MAX_CHUNK).contains(&chunk).then_some((bytes, chunk))
}

/// Writes `bytes` of [`pattern`] in writes of `chunk` bytes, blocking while
/// the client is behind.
fn send_pattern(mut body: BodyWriter, bytes: u64, chunk: usize) {
    let pattern = pattern();
    let period = pattern.len();
    // Enough of the pattern to start a chunk at any phase of it.
    let buf: Vec<u8> = pattern
        .iter()
        .copied()
        .cycle()
        .take(chunk + period)
        .collect();
    let mut sent = 0u64;
    while sent < bytes {
        let phase = (sent % period as u64) as usize;
        let n = chunk.min(usize::try_from(bytes - sent).unwrap_or(usize::MAX));
        if let Err(e) = body.write_all(&buf[phase..phase + n]) {
            log::debug!("stream stopped after {sent} bytes: {e}");
            return;
        }
        sent += n as u64;
    }
    finish(body);
}

/// The longest pause between server-sent events.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// `events` (default 10) and `interval_ms` (default 1000) of `/sse`.
fn sse_params(req: &Request<'_>) -> Option<(u64, Duration)> {
    let events = match req.query_param("events") {
        Some(n) => n.parse().ok()?,
        None => 10,
    };
    let interval = match req.query_param("interval_ms") {
        Some(n) => Duration::from_millis(n.parse().ok()?),
        None => Duration::from_secs(1),
    };
    Some((events, interval.min(MAX_INTERVAL)))
}

/// Sends `events` server-sent events, `interval` apart.
fn send_events(mut body: BodyWriter, events: u64, interval: Duration) {
    for n in 0..events {
        if n > 0 {
            std::thread::sleep(interval);
        }
        if let Err(e) = write!(body, "id: {n}\ndata: event {n} of {events}\n\n") {
            log::debug!("event stream stopped after {n} events: {e}");
            return;
        }
    }
    finish(body);
}

/// Whether the request offers the echo protocol among those in `Upgrade`.
fn offers_echo(req: &Request<'_>) -> bool {
    let upgrade = req.header_str("upgrade").unwrap_or_default();
    upgrade
        .split(',')
        .any(|protocol| protocol.trim().eq_ignore_ascii_case("echo"))
}

/// Echoes every byte until the client closes, a read or write makes no
/// progress for `idle`, or — unless `ignore_stop` — the drain begins, which
/// shuts the socket down so the blocked read returns.
fn echo(mut upgraded: Upgraded, ignore_stop: bool, idle: Duration) {
    let socket = upgraded.get_ref();
    if let Err(e) = socket
        .set_read_timeout(Some(idle))
        .and_then(|()| socket.set_write_timeout(Some(idle)))
    {
        log::error!("echo cannot time out: {e}");
    }
    if !ignore_stop {
        match upgraded.get_ref().try_clone() {
            Ok(socket) => upgraded.on_stop(move || {
                let _ = socket.shutdown(Shutdown::Both);
            }),
            Err(e) => log::error!("echo cannot watch for the drain: {e}"),
        }
    }
    let mut buf = vec![0; 16 << 10];
    loop {
        let n = match upgraded.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("echo read: {e}");
                break;
            }
        };
        if let Err(e) = upgraded.write_all(&buf[..n]) {
            log::debug!("echo write: {e}");
            break;
        }
    }
    // Dropping `upgraded` closes the connection and tells the server.
}

/// A path the demo answers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Route {
    Hello,
    Sleep,
    Echo,
    Upload,
    Healthz,
    Stream,
    Sse,
    Upgrade,
    /// `OPTIONS *`: the server as a whole (RFC 9110 §9.3.7).
    Server,
}

impl Route {
    fn from_path(path: &str) -> Option<Route> {
        match path {
            "/" => Some(Route::Hello),
            "/sleep" => Some(Route::Sleep),
            "/echo" => Some(Route::Echo),
            "/upload" => Some(Route::Upload),
            "/healthz" => Some(Route::Healthz),
            "/stream" => Some(Route::Stream),
            "/sse" => Some(Route::Sse),
            "/upgrade" => Some(Route::Upgrade),
            "*" => Some(Route::Server),
            _ => None,
        }
    }

    /// Whether it answers `method`. Compared with literals, so each test is
    /// a length check and a word compare; a search of a list of names calls
    /// `bcmp` for every one.
    fn answers(self, method: &str) -> bool {
        match self {
            Route::Echo | Route::Upload => method == "POST",
            Route::Upgrade => method == "GET",
            Route::Server => method == "OPTIONS",
            Route::Hello | Route::Sleep | Route::Healthz | Route::Stream | Route::Sse => {
                method == "GET" || method == "HEAD"
            }
        }
    }

    /// The methods it answers, as a 405's `Allow` lists them: static, so
    /// answering a wrong method costs no joining.
    fn allow(self) -> &'static str {
        match self {
            Route::Echo | Route::Upload => "POST",
            Route::Upgrade => "GET",
            Route::Server => "OPTIONS",
            Route::Hello | Route::Sleep | Route::Healthz | Route::Stream | Route::Sse => {
                "GET, HEAD"
            }
        }
    }
}

/// Why a request names no route.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Miss {
    /// A method the server does not know at all (RFC 9110 §9.1): 501.
    UnknownMethod,
    /// An unknown path: 404.
    NotFound,
    /// A known path asked with a method it does not answer: 405, whose
    /// `Allow` tells the client what it may send instead.
    WrongMethod { allow: &'static str },
}

impl Miss {
    fn response(self) -> Response {
        match self {
            Miss::UnknownMethod => Response::text(501, "Not Implemented\n"),
            Miss::NotFound => Response::text(404, "Not Found\n"),
            Miss::WrongMethod { allow } => {
                Response::text(405, "Method Not Allowed\n").header("Allow", allow)
            }
        }
    }
}

/// The route a request names.
fn route(method: &str, path: &str) -> Result<Route, Miss> {
    /// RFC 9110's methods and PATCH (RFC 5789).
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    match Route::from_path(path) {
        Some(route) if route.answers(method) => Ok(route),
        // Off the common path: whether the method is one known at all.
        _ if !KNOWN.contains(&method) => Err(Miss::UnknownMethod),
        Some(route) => Err(Miss::WrongMethod {
            allow: route.allow(),
        }),
        None => Err(Miss::NotFound),
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
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            fnv1a(fnv1a(FNV_OFFSET, b"foo"), b"bar"),
            fnv1a(FNV_OFFSET, b"foobar")
        );
    }

    #[test]
    fn each_route_allows_the_methods_it_answers() {
        let routes = [
            Route::Hello,
            Route::Sleep,
            Route::Echo,
            Route::Upload,
            Route::Healthz,
            Route::Stream,
            Route::Sse,
            Route::Upgrade,
            Route::Server,
        ];
        for route in routes {
            for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"] {
                let listed = route.allow().split(", ").any(|allowed| allowed == method);
                assert_eq!(route.answers(method), listed, "{route:?} {method}");
            }
        }
    }

    #[test]
    fn options_asterisk_is_the_server_s_and_only_options_s() {
        assert_eq!(route("OPTIONS", "*"), Ok(Route::Server));
        assert_eq!(
            route("GET", "*"),
            Err(Miss::WrongMethod { allow: "OPTIONS" })
        );
    }

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
        assert_eq!(route("POST", "/upload"), Ok(Route::Upload));
        assert_eq!(route("GET", "/sleep"), Ok(Route::Sleep));
        assert_eq!(route("GET", "/stream"), Ok(Route::Stream));
        assert_eq!(route("GET", "/sse"), Ok(Route::Sse));
        assert_eq!(route("GET", "/upgrade"), Ok(Route::Upgrade));
        assert_eq!(
            route("HEAD", "/upgrade"),
            Err(Miss::WrongMethod { allow: "GET" })
        );
        assert_eq!(route("POST", "/nope"), Err(Miss::NotFound));
    }

    #[test]
    fn a_method_known_nowhere_is_501_on_any_path() {
        for path in ["/", "/echo", "/nope"] {
            assert_eq!(route("FOO", path), Err(Miss::UnknownMethod), "{path}");
            assert_eq!(
                route("get", path),
                Err(Miss::UnknownMethod),
                "methods are case-sensitive"
            );
            assert_eq!(
                Miss::UnknownMethod.response(),
                Response::text(501, "Not Implemented\n")
            );
        }
    }
}
