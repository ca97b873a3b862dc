//! End-to-end: `driver-mio/examples/service.rs` answers each of its routes,
//! then drains on SIGTERM and exits 0.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use ebb_tests::{example_binary, serial, Client, Ebb, Response};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` as written and reads the response.
fn send(client: &mut Client, request: &str) -> Response {
    client.stream.write_all(request.as_bytes()).unwrap();
    client.read_response().unwrap()
}

#[test]
fn example_service_answers_every_route_then_drains_cleanly() {
    let _serial = serial();
    let mut command = Command::new(example_binary("service"));
    command.arg("127.0.0.1:0").env_remove("PORT");
    let service = Ebb::spawn(command);
    let mut client = Client::connect(service.addr, IO_TIMEOUT).unwrap();

    let hello = send(
        &mut client,
        "GET /hello?name=ada HTTP/1.1\r\nHost: t\r\nUser-Agent: e2e/1\r\n\r\n",
    );
    assert_eq!(
        (hello.status, &hello.body[..]),
        (200, &b"hello ada (e2e/1)\n"[..])
    );

    let items = send(
        &mut client,
        "POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde",
    );
    assert_eq!(items.status, 201);
    assert_eq!(items.header("content-type"), Some("application/json"));
    assert_eq!(items.body, br#"{"bytes":5}"#);

    let slow = client.get("/slow").unwrap();
    assert_eq!((slow.status, &slow.body[..]), (200, &b"done\n"[..]));
    let health = client.get("/healthz").unwrap();
    assert_eq!((health.status, &health.body[..]), (200, &b"ok\n"[..]));
    assert_eq!(client.get("/nowhere").unwrap().status, 404);

    drop(client);
    service.signal(libc::SIGTERM);
    service.expect_clean_exit(Duration::from_secs(10));
}
