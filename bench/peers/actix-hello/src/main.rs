//! A peer for ebb's benchmark (bench/peers.sh): actix-web answering
//! `Hello, World!` (text/plain) on every path.
//!
//! Usage: `actix-hello ADDR WORKERS` — WORKERS actix worker threads, each
//! with its own single-threaded runtime. actix also keeps its system thread
//! and an accept thread; the benchmark pins them all to the same core.
use actix_web::{web, App, HttpResponse, HttpServer};

async fn hello() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Hello, World!")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8082".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    HttpServer::new(|| App::new().default_service(web::to(hello)))
        .workers(workers)
        // As ebb and hyper-hello do; actix leaves the socket as it is unless asked.
        .tcp_nodelay(true)
        // Quiet exits between benchmark runs: no connection outlives wrk.
        .shutdown_timeout(1)
        .bind(addr)?
        .run()
        .await
}
