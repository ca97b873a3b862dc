//! A small service on ebb: a query parameter and a header, a JSON answer to a
//! POST body, an answer given later from another thread, a readiness route.
//!
//! `cargo run -p ebb-mio --example service -- 127.0.0.1:3000` (or `PORT=3000`);
//! SIGTERM drains it.

use std::net::TcpListener;
use std::time::Duration;

use ebb_mio::{Builder, Response};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = match (std::env::args().nth(1), std::env::var("PORT")) {
        (Some(addr), _) => addr,
        (None, Ok(port)) => format!("127.0.0.1:{port}"),
        (None, Err(_)) => "127.0.0.1:3000".to_owned(),
    };
    // Bound here rather than by the builder to print the port 0 chose.
    let listener = TcpListener::bind(addr)?;
    eprintln!("ebb listening on {}", listener.local_addr()?);

    let report = Builder::new().listener(listener).serve(|req, res| {
        match (req.method(), req.path()) {
            // GET /hello?name=ada → "hello ada (curl/8.5.0)"
            ("GET", "/hello") => {
                let query = req.query().unwrap_or("");
                let name = query.split('&').find_map(|p| p.strip_prefix("name="));
                let agent = req.header("user-agent").map(String::from_utf8_lossy);
                let (name, agent) = (name.unwrap_or("world"), agent.unwrap_or_default());
                res.respond(Response::text(200, format!("hello {name} ({agent})\n")));
            }
            // POST /items → {"bytes":N}; the body is all in `req.body()`.
            ("POST", "/items") => {
                let json = format!(r#"{{"bytes":{}}}"#, req.body().len());
                res.respond(Response::json(201, json));
            }
            // Answered from another thread: the worker's loop never waits.
            ("GET", "/slow") => {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    res.respond(Response::text(200, "done\n"));
                });
            }
            // Readiness: fail as soon as the server is stopping.
            ("GET", "/healthz") if res.is_stopping() => {
                res.respond(Response::text(503, "stopping\n"));
            }
            ("GET", "/healthz") => res.respond(Response::text(200, "ok\n")),
            _ => res.respond(Response::text(404, "not found\n")),
        }
    })?;
    eprintln!("{report}");
    Ok(())
}
