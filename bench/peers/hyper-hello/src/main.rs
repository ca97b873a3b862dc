//! A peer for ebb's benchmark (bench/peers.sh): hyper's HTTP/1 server
//! answering `Hello, World!` (text/plain) on every path.
//!
//! Usage: `hyper-hello ADDR WORKERS`. One worker is a current-thread tokio
//! runtime — everything on the thread that calls `main`, as ebb's
//! `--workers 1` is one event loop; more is a multi-thread runtime with that
//! many worker threads.
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(b"Hello, World!")))
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
