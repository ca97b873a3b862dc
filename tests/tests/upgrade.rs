//! End-to-end: hot upgrades of the real `ebb` binary (SIGUSR2) under load —
//! successful ones, failed ones, one cut short by SIGTERM — and what ebb
//! tells systemd along the way.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use ebb_tests::{
    become_subreaper, ebb_binary, kill, read_pid_file, serial, wait_gone, wait_pid_file_change,
    Client, Ebb, Load, LoadShape, Strays, TempDir,
};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds on a shared two-core machine: generous, never the measure.
const READY_BOUND: Duration = Duration::from_secs(20);
const EXIT_BOUND: Duration = Duration::from_secs(20);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `ebb` from `binary` with `args`, the environment cleared of what would
/// change it.
fn command(binary: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_remove("PORT")
        .env_remove("SHUTDOWN_TIMEOUT_S")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("EBB_UPGRADE_READY_FD")
        .env_remove("NOTIFY_SOCKET");
    command
}

/// Copies `from` to `to` through a temporary file and a rename, as a deploy
/// replaces a binary: the running process keeps the old file.
fn install(from: &Path, to: &Path) {
    let temporary = to.with_extension("new");
    std::fs::copy(from, &temporary).unwrap();
    std::fs::rename(&temporary, to).unwrap();
}

fn write_script(path: &Path, body: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn shape() -> LoadShape {
    LoadShape {
        keep_alive_threads: 8,
        new_connection_threads: 1,
    }
}

#[test]
fn hot_upgrade_three_times_under_load_loses_nothing() {
    let _serial = serial();
    become_subreaper();
    let mut strays = Strays::default();
    let dir = TempDir::new("upgrade");
    // The binary is replaced on disk before each upgrade, as a deploy does:
    // each successor must run the file now at the path, not the old one.
    let binary = dir.join("ebb");
    install(&ebb_binary(), &binary);
    let pid_file = dir.join("ebb.pid");
    let pid_file_arg = pid_file.to_str().unwrap();
    let ebb = Ebb::spawn(command(
        &binary,
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--pid-file",
            pid_file_arg,
        ],
    ));
    let first = wait_pid_file_change(&pid_file, None, READY_BOUND).expect("the pid file");
    let load = Load::start(ebb.addr, shape());
    thread::sleep(Duration::from_millis(1000));

    let mut pids = vec![first];
    let mut marks = vec![load.completed()];
    for upgrade in 1..=3 {
        install(&ebb_binary(), &binary);
        let old = *pids.last().unwrap();
        let signalled = Instant::now();
        assert!(kill(old, libc::SIGUSR2), "SIGUSR2 to {old}");
        let new = wait_pid_file_change(&pid_file, Some(old), READY_BOUND).unwrap_or_else(|| {
            panic!(
                "upgrade {upgrade}: no successor took the pid file:\n{}",
                ebb.log()
            )
        });
        let ready = signalled.elapsed();
        strays.0.push(new);
        pids.push(new);
        check_inherited_descriptors(new);
        let exe = std::fs::read_link(format!("/proc/{new}/exe")).unwrap();
        assert_eq!(
            exe, binary,
            "upgrade {upgrade}: the successor runs the new file at the path"
        );
        let (code, exited) = wait_gone(old, EXIT_BOUND).unwrap_or_else(|| {
            panic!(
                "upgrade {upgrade}: old process {old} still runs:\n{}",
                ebb.log()
            )
        });
        if let Some(code) = code {
            assert_eq!(code, 0, "upgrade {upgrade}: old process {old} exit status");
        }
        eprintln!(
            "upgrade {upgrade}: {old} -> {new}: SIGUSR2 to successor ready (pid file) {:.1} ms, \
             old process exited {:.1} ms after SIGUSR2 ({:.1} ms after ready)",
            ms(ready),
            ms(exited - signalled),
            ms(exited - signalled - ready),
        );
        thread::sleep(Duration::from_millis(2000));
        marks.push(load.completed());
    }
    assert!(
        load.elapsed() >= Duration::from_secs(6),
        "{:?}",
        load.elapsed()
    );
    let stats = load.stop();
    let per_upgrade: Vec<u64> = marks.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "load: {} requests ({} POST) in {} connections, {} closed by `Connection: close`, \
         {} closed while idle; before the first upgrade {}, after each upgrade {per_upgrade:?}; \
         failed {}",
        stats.completed,
        stats.posts,
        stats.connections,
        stats.closed_by_response,
        stats.closed_while_idle,
        marks[0],
        stats.failures.len(),
    );
    assert!(
        stats.failures.is_empty(),
        "failed requests:\n{}\n{}",
        stats.failures.join("\n"),
        ebb.log()
    );
    assert!(per_upgrade.iter().all(|&n| n > 0), "{per_upgrade:?}");

    // The last one serves; every earlier one has exited.
    let last = *pids.last().unwrap();
    assert_eq!(read_pid_file(&pid_file), Some(last));
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    assert_eq!(client.get("/").unwrap().status, 200);
    drop(client);
    for &pid in &pids[..pids.len() - 1] {
        assert!(wait_gone(pid, Duration::ZERO).is_some(), "{pid} still runs");
    }
    let (status, _) = ebb.exit().expect("the first process exited");
    assert!(status.success(), "the first process: {status}");
    assert!(kill(last, libc::SIGTERM));
    let (code, _) = wait_gone(last, EXIT_BOUND).expect("the last process exits on SIGTERM");
    assert_eq!(code, Some(0));
    wait_logged(&ebb, "drain complete after hand-off", 3);
    wait_logged(&ebb, "drain complete in", 1);
    let log = ebb.log();
    assert_eq!(
        log.matches("upgrade report: handed off").count(),
        3,
        "{log}"
    );
    assert_eq!(
        log.matches("drain complete after hand-off").count(),
        3,
        "{log}"
    );
    assert!(!pid_file.exists(), "the last process removes its pid file");
}

#[test]
fn failed_upgrades_leave_the_old_process_serving() {
    let _serial = serial();
    become_subreaper();
    let mut strays = Strays::default();
    let dir = TempDir::new("upgrade-fail");
    let pid_file = dir.join("ebb.pid");
    // The successor's command is a script the test rewrites between upgrades.
    let next = dir.join("next");
    let ebb = Ebb::spawn(command(
        &ebb_binary(),
        &[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--upgrade-command",
            next.to_str().unwrap(),
            "--upgrade-timeout",
            "1",
        ],
    ));
    let pid = wait_pid_file_change(&pid_file, None, READY_BOUND).expect("the pid file");
    let load = Load::start(ebb.addr, shape());
    thread::sleep(Duration::from_millis(300));
    let logged = |text: &str, n: usize| wait_logged(&ebb, text, n);
    let failed = |n: usize| logged("upgrade report: failed", n);

    // A successor that exits at once.
    write_script(&next, "exit 7");
    let signalled = Instant::now();
    assert!(kill(pid, libc::SIGUSR2));
    failed(1);
    eprintln!(
        "successor exits at once: failure logged after {:.1} ms",
        ms(signalled.elapsed())
    );
    assert!(
        ebb.log()
            .contains("exited before it was ready (exit status: 7)"),
        "{}",
        ebb.log()
    );

    // A successor that cannot be started.
    std::fs::remove_file(&next).unwrap();
    let signalled = Instant::now();
    assert!(kill(pid, libc::SIGUSR2));
    failed(2);
    eprintln!(
        "successor missing: failure logged after {:.1} ms",
        ms(signalled.elapsed())
    );
    assert!(ebb.log().contains("cannot start"), "{}", ebb.log());

    // A successor that never says it serves; a second SIGUSR2 meanwhile is ignored.
    write_script(&next, "exec sleep 30");
    let signalled = Instant::now();
    assert!(kill(pid, libc::SIGUSR2));
    // The second start: the missing program never started.
    logged("upgrading: started successor", 2);
    let sleeper = successor_pid(&ebb.log(), 2);
    strays.0.push(sleeper);
    assert!(kill(pid, libc::SIGUSR2));
    failed(3);
    eprintln!(
        "successor never ready: failure logged after {:.1} ms",
        ms(signalled.elapsed())
    );
    let log = ebb.log();
    assert!(
        log.contains("SIGUSR2 ignored: an upgrade is already under way"),
        "{log}"
    );
    assert!(log.contains("it was not ready within 1s"), "{log}");
    assert!(log.contains("stopping it (SIGTERM)"), "{log}");
    assert!(
        wait_gone(sleeper, EXIT_BOUND).is_some(),
        "the successor was stopped"
    );

    // The old process served all along, and still names itself.
    assert_eq!(read_pid_file(&pid_file), Some(pid));
    thread::sleep(Duration::from_millis(300));
    let stats = load.stop();
    eprintln!(
        "load across three failed upgrades: {} requests, failed {}",
        stats.completed,
        stats.failures.len()
    );
    assert!(stats.failures.is_empty(), "{}", stats.failures.join("\n"));
    assert_eq!(ebb.log().matches("ebb listening on").count(), 1);

    // A wrapper that execs ebb keeps the pid systemd-style LISTEN_PID names.
    write_script(&next, &format!("exec '{}' \"$@\"", ebb_binary().display()));
    assert!(kill(pid, libc::SIGUSR2));
    let new = wait_pid_file_change(&pid_file, Some(pid), READY_BOUND).expect("a successor");
    strays.0.push(new);
    ebb.expect_exit_code(EXIT_BOUND, 0);
    let mut client = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    assert_eq!(client.get("/").unwrap().status, 200);
    drop(client);
    assert!(kill(new, libc::SIGTERM));
    assert_eq!(wait_gone(new, EXIT_BOUND).expect("exits").0, Some(0));
}

/// The successor's inherited listening socket (descriptor 3) is
/// non-blocking and close-on-exec, and its readiness pipe is closed once used.
fn check_inherited_descriptors(pid: i32) {
    let fdinfo = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/3")).unwrap();
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .expect("flags in fdinfo");
    assert_ne!(
        flags & libc::O_NONBLOCK as u32,
        0,
        "fd 3 non-blocking: {flags:o}"
    );
    assert_ne!(
        flags & libc::O_CLOEXEC as u32,
        0,
        "fd 3 close-on-exec: {flags:o}"
    );
    let target = |fd: &str| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok();
    assert!(
        target("3").is_some_and(|t| t.to_string_lossy().starts_with("socket:")),
        "fd 3 is the socket"
    );
    // The readiness pipe, named in its environment, is closed once used
    // (its number may since hold something else, but not a pipe).
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let ready_fd = environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"EBB_UPGRADE_READY_FD="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("EBB_UPGRADE_READY_FD in the successor's environment");
    assert_eq!(ready_fd, "4", "after the one socket");
    let until = Instant::now() + READY_BOUND;
    while target(&ready_fd).is_some_and(|t| t.to_string_lossy().starts_with("pipe:")) {
        assert!(
            Instant::now() < until,
            "{pid} keeps its readiness pipe open"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `text` appears `n` times in the log (the processes after the
/// first share its log, which is read on a thread of its own).
fn wait_logged(ebb: &Ebb, text: &str, n: usize) {
    let until = Instant::now() + READY_BOUND;
    while ebb.log().matches(text).count() < n {
        assert!(Instant::now() < until, "no {text:?} {n}:\n{}", ebb.log());
        thread::sleep(Duration::from_millis(5));
    }
}

/// The pid in the `n`th "started successor N" line of `log`.
fn successor_pid(log: &str, n: usize) -> i32 {
    let line = log
        .lines()
        .filter(|l| l.contains("started successor "))
        .nth(n - 1)
        .unwrap_or_else(|| panic!("no start {n}:\n{log}"));
    let rest = &line[line.find("started successor ").unwrap() + "started successor ".len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn sigterm_during_an_upgrade_abandons_it_and_drains() {
    let _serial = serial();
    become_subreaper();
    let mut strays = Strays::default();
    let dir = TempDir::new("upgrade-term");
    let next = dir.join("next");
    write_script(&next, "exec sleep 30");
    let ebb = Ebb::spawn(command(
        &ebb_binary(),
        &[
            "--bind",
            "127.0.0.1:0",
            "--upgrade-command",
            next.to_str().unwrap(),
        ],
    ));
    let mut in_flight = Client::connect(ebb.addr, IO_TIMEOUT).unwrap();
    in_flight.send_get("/sleep?ms=500").unwrap();
    ebb.signal(libc::SIGUSR2);
    assert!(ebb.wait_for_log("upgrading: started successor", IO_TIMEOUT));
    let successor = successor_pid(&ebb.log(), 1);
    strays.0.push(successor);
    ebb.signal(libc::SIGTERM);
    let response = in_flight.read_response().unwrap();
    assert_eq!((response.status, response.close), (200, true));
    in_flight.read_to_eof().unwrap();
    drop(in_flight);
    // Status 0, and the whole log.
    ebb.expect_clean_exit(EXIT_BOUND);
    assert!(
        wait_gone(successor, EXIT_BOUND).is_some(),
        "the successor was stopped"
    );
    let log = ebb.log();
    assert!(
        log.contains("upgrade failed: abandoned: SIGTERM came during it"),
        "{log}"
    );
    assert!(log.contains("SIGTERM: draining"), "{log}");
    assert!(log.contains("drain complete in"), "{log}");
    assert!(
        log.contains("rejected 0, cut 0, upgraded 0 (cut 0), reset-risk closes 0"),
        "{log}"
    );
}

#[test]
fn systemd_hears_ready_mainpid_and_stopping_in_order() {
    let _serial = serial();
    become_subreaper();
    let mut strays = Strays::default();
    let dir = TempDir::new("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(READY_BOUND)).unwrap();
    let receive = || {
        let mut buf = [0; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let pid_file = dir.join("ebb.pid");
    let mut start = command(
        &ebb_binary(),
        &[
            "--bind",
            "127.0.0.1:0",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
    );
    start.env("NOTIFY_SOCKET", &socket_path);
    let ebb = Ebb::spawn(start);
    assert_eq!(receive(), "READY=1");
    let first = read_pid_file(&pid_file).unwrap();

    ebb.signal(libc::SIGUSR2);
    let successor_ready = receive();
    let mainpid = receive();
    let second = read_pid_file(&pid_file).unwrap();
    strays.0.push(second);
    assert_ne!(first, second);
    assert_eq!(successor_ready, "READY=1", "the successor's, first");
    assert_eq!(mainpid, format!("MAINPID={second}"), "then the parent's");
    ebb.expect_exit_code(EXIT_BOUND, 0);

    assert!(kill(second, libc::SIGTERM));
    assert_eq!(receive(), "STOPPING=1");
    assert_eq!(wait_gone(second, EXIT_BOUND).expect("exits").0, Some(0));
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0; 64];
    assert!(socket.recv(&mut buf).is_err(), "nothing more");
    eprintln!("notifications: READY=1, READY=1, MAINPID={second}, STOPPING=1");
}
