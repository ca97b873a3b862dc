//! A peer for ebb's benchmarks (bench/peers.sh, bench/stream.sh): hyper's
//! HTTP/1 server answering `Hello, World!` (text/plain) on every path but
//! one: `GET /stream?bytes=N&chunk=K` streams N bytes of the pattern ebb's
//! demo streams (byte `i` is `PATTERN[i % 64]`) in pieces of K bytes
//! (default 64 KiB), with unknown length (chunked), as ebb's `/stream` does;
//! and `POST /upload` reads the body as it arrives and answers
//! `bytes=N fnv1a=HEX` (its length and FNV-1a 64), or `bytes=N` with
//! `?hash=0`, as ebb's `/upload` does.
//!
//! Usage: `hyper-hello ADDR WORKERS`. One worker is a current-thread tokio
//! runtime — everything on the thread that calls `main`, as ebb's
//! `--workers 1` is one event loop; more is a multi-thread runtime with that
//! many worker threads.
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Either, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The body of ebb's demo `/stream`.
const PATTERN: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n";

/// `left` more bytes of the pattern, handed out as slices of one buffer that
/// holds a chunk from any phase of it (no copy per chunk).
struct PatternBody {
    buf: Bytes,
    chunk: usize,
    sent: u64,
    left: u64,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let phase = (self.sent % PATTERN.len() as u64) as usize;
        let n = (self.chunk as u64).min(self.left) as usize;
        let data = self.buf.slice(phase..phase + n);
        self.sent += n as u64;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

type AnyBody = Either<Full<Bytes>, PatternBody>;

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// FNV-1a 64 of `bytes`, continuing from `hash` (as ebb's demo computes it).
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Reads the body of `/upload` as it arrives: its length, and its checksum
/// unless `?hash=0`.
async fn upload(req: Request<hyper::body::Incoming>) -> Response<AnyBody> {
    let hashing = req.uri().query().and_then(|q| param(q, "hash")) != Some(0);
    let mut body = req.into_body();
    let (mut bytes, mut hash) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Response::builder()
                .status(400)
                .body(Either::Left(Full::default()))
                .unwrap();
        };
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            if hashing {
                hash = fnv1a(hash, data);
            }
        }
    }
    let text = match hashing {
        true => format!("bytes={bytes} fnv1a={hash:016x}\n"),
        false => format!("bytes={bytes}\n"),
    };
    Response::builder()
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Either::Left(Full::new(Bytes::from(text))))
        .unwrap()
}

async fn hello(req: Request<hyper::body::Incoming>) -> Result<Response<AnyBody>, Infallible> {
    if req.uri().path() == "/upload" && req.method() == hyper::Method::POST {
        return Ok(upload(req).await);
    }
    if req.uri().path() == "/stream" {
        let query = req.uri().query().unwrap_or_default();
        let left = param(query, "bytes").unwrap_or(1 << 20);
        let chunk = param(query, "chunk").unwrap_or(64 << 10).clamp(1, 16 << 20) as usize;
        let buf: Vec<u8> = PATTERN
            .iter()
            .copied()
            .cycle()
            .take(chunk + PATTERN.len())
            .collect();
        let body = PatternBody {
            buf: Bytes::from(buf),
            chunk,
            sent: 0,
            left,
        };
        return Ok(Response::builder()
            .header("Content-Type", "application/octet-stream")
            .body(Either::Right(body))
            .unwrap());
    }
    Ok(Response::builder()
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Either::Left(Full::new(Bytes::from_static(
            b"Hello, World!",
        ))))
        .unwrap())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    let mut runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    runtime.enable_io().build().unwrap().block_on(serve(addr));
}

async fn serve(addr: String) {
    let listener = TcpListener::bind(&addr).await.unwrap();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}
