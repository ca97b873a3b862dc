//! End-to-end: rolling restarts of two `ebb` instances behind real load
//! balancers, HAProxy and nginx, run from the configurations in `deploy/`
//! with loopback ports filled in, under load, with keep-alive on both sides.
//! The client must see no failed request.
//!
//! haproxy and nginx must be installed (`.ci/run` installs them): without
//! them these tests fail, they do not pass unseen.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ebb_tests::{
    become_subreaper, kill, read_pid_file, serial, wait_gone, wait_pid_file_change, Client, Ebb,
    Load, LoadShape, Strays, TempDir,
};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds on a shared two-core machine: generous, never the measure.
const BOUND: Duration = Duration::from_secs(20);
/// HAProxy's check interval in the tests; with `fall 3` a server is down
/// within about 3 × 100 ms of failing its checks.
const CHECK_INTER: &str = "100ms";
/// The pre-stop that must outlast that: 3 × 100 ms plus a wide margin.
const PRE_STOP: &str = "1.5";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn shape() -> LoadShape {
    LoadShape {
        keep_alive_threads: 8,
        new_connection_threads: 1,
    }
}

/// The path of the installed tool `name`; fails the test if it is missing.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} is not installed: the load-balancer tests run haproxy and nginx \
         (`apt-get install -y haproxy nginx`; .ci/run installs them)"
    );
}

/// `deploy/<template>` with each `${NAME}` replaced, as envsubst would.
fn render(template: &str, values: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(template);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    for (name, value) in values {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    // Comments may name placeholders; the directives must not.
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        assert!(
            !line.contains("${EBB_"),
            "unfilled placeholder in {template}: {line}"
        );
    }
    text
}

/// A loopback address with a port free at the moment.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A load balancer process, its output collected; killed when dropped.
struct Proxy {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Proxy {
    fn start(name: &str, mut command: Command) -> Proxy {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = output.clone();
            let name = name.to_owned();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{name}: {line}");
                    let mut all = sink.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
            });
        }
        Proxy { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until `addr`, served through it, answers `GET /` with 200.
    fn wait_serving(&mut self, addr: SocketAddr) {
        let until = Instant::now() + BOUND;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the load balancer exited ({status}):\n{}", self.output());
            }
            let answered = Client::connect(addr, IO_TIMEOUT)
                .and_then(|mut c| c.get("/"))
                .is_ok_and(|r| r.status == 200);
            if answered {
                return;
            }
            assert!(
                Instant::now() < until,
                "no answer through {addr}:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    /// SIGTERM, so that nginx's master takes its workers down with it (a
    /// SIGKILLed master leaves them running); SIGKILL only if it lingers.
    fn drop(&mut self) {
        kill(self.child.id() as i32, libc::SIGTERM);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server's row of HAProxy's CSV statistics.
#[derive(Debug)]
struct ServerStats {
    status: String,
    /// Connections opened to it, and requests sent on a reused one.
    connect: u64,
    reuse: u64,
}

fn haproxy_stats(admin: SocketAddr, server: &str) -> Option<ServerStats> {
    let mut client = Client::connect(admin, IO_TIMEOUT).ok()?;
    let response = client.get("/stats;csv").ok()?;
    let text = String::from_utf8(response.body).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (px, sv, status) = (column("pxname")?, column("svname")?, column("status")?);
    let (connect, reuse) = (column("connect")?, column("reuse")?);
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find_map(|row| {
            (row.get(px) == Some(&"ebb") && row.get(sv) == Some(&server)).then(|| ServerStats {
                status: row[status].to_owned(),
                connect: row[connect].parse().unwrap_or(0),
                reuse: row[reuse].parse().unwrap_or(0),
            })
        })
}

fn wait_status(admin: SocketAddr, server: &str, status: &str, proxy: &Proxy) -> Instant {
    let until = Instant::now() + BOUND;
    loop {
        if haproxy_stats(admin, server).is_some_and(|s| s.status == status) {
            return Instant::now();
        }
        assert!(
            Instant::now() < until,
            "{server} never {status}: {:?}\n{}",
            haproxy_stats(admin, server),
            proxy.output()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn rolling_restart_behind_haproxy_loses_nothing() {
    let _serial = serial();
    let haproxy = tool("haproxy");
    let dir = TempDir::new("haproxy");
    let (front, admin) = (free_addr(), free_addr());
    let backends = [free_addr(), free_addr()];
    let ebb_args = |addr: SocketAddr| {
        vec![
            "--bind".to_owned(),
            addr.to_string(),
            "--workers".to_owned(),
            "2".to_owned(),
            "--pre-stop".to_owned(),
            PRE_STOP.to_owned(),
            "--drain-timeout".to_owned(),
            "10".to_owned(),
        ]
    };
    let start = |addr: SocketAddr| {
        let args = ebb_args(addr);
        Ebb::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let mut instances = backends.map(start);
    let config = render(
        "haproxy.cfg.template",
        &[
            ("EBB_FRONTEND", front.to_string()),
            ("EBB_BACKEND_1", backends[0].to_string()),
            ("EBB_BACKEND_2", backends[1].to_string()),
            ("EBB_CHECK_INTER", CHECK_INTER.to_owned()),
            ("EBB_ADMIN", admin.to_string()),
        ],
    );
    let config_path = dir.join("haproxy.cfg");
    std::fs::write(&config_path, config).unwrap();
    let mut command = Command::new(haproxy);
    command.arg("-f").arg(&config_path).arg("-db");
    let mut proxy = Proxy::start("haproxy", command);
    proxy.wait_serving(front);
    for server in ["ebb1", "ebb2"] {
        wait_status(admin, server, "UP", &proxy);
    }

    let load = Load::start(front, shape());
    thread::sleep(Duration::from_millis(1000));
    let mut marks = vec![load.completed()];
    for (i, server) in ["ebb1", "ebb2"].into_iter().enumerate() {
        let stopped = Instant::now();
        instances[i].signal(libc::SIGTERM);
        let down = wait_status(admin, server, "DOWN", &proxy);
        let exited = instances[i].expect_clean_exit(BOUND);
        let log = instances[i].log();
        assert!(
            log.contains("rejected 0, cut 0, upgraded 0 (cut 0), reset-risk closes 0"),
            "{log}"
        );
        let restarted = Instant::now();
        instances[i] = start(backends[i]);
        let up = wait_status(admin, server, "UP", &proxy);
        eprintln!(
            "{server}: SIGTERM -> marked down {:.0} ms (pre-stop {PRE_STOP} s) -> exited {:.0} ms; \
             restarted, marked up {:.0} ms later",
            ms(down - stopped),
            ms(exited - stopped),
            ms(up - restarted),
        );
        thread::sleep(Duration::from_millis(500));
        marks.push(load.completed());
    }
    let stats = load.stop();
    let servers = ["ebb1", "ebb2"].map(|s| haproxy_stats(admin, s).unwrap());
    let backend: Vec<String> = servers
        .iter()
        .map(|s| format!("{} connections, {} reuses", s.connect, s.reuse))
        .collect();
    eprintln!(
        "through haproxy: {} requests ({} POST) on {} client connections; before the restarts {}, \
         during each restart {:?}; haproxy to ebb1, ebb2: {backend:?}; failed {}",
        stats.completed,
        stats.posts,
        stats.connections,
        marks[0],
        marks.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>(),
        stats.failures.len(),
    );
    assert!(
        stats.failures.is_empty(),
        "failed requests:\n{}\n{}",
        stats.failures.join("\n"),
        proxy.output()
    );
    // Keep-alive on both sides: far fewer connections than requests (the
    // share of the threads that reconnect per request varies with the
    // machine's load, so the bound is loose).
    assert!(stats.connections * 4 < stats.completed, "{stats:?}");
    assert!(servers.iter().all(|s| s.reuse > 0), "{servers:?}");
    for instance in &instances {
        instance.signal(libc::SIGTERM);
    }
    for instance in &instances {
        instance.expect_clean_exit(BOUND);
    }
}

#[test]
fn rolling_upgrade_behind_nginx_loses_nothing() {
    let _serial = serial();
    become_subreaper();
    let mut strays = Strays::default();
    let nginx = tool("nginx");
    let dir = TempDir::new("nginx");
    let front = free_addr();
    let backends = [free_addr(), free_addr()];
    // SO_REUSEPORT instances: each upgrade passes both sockets of each.
    let pid_files = [dir.join("ebb1.pid"), dir.join("ebb2.pid")];
    let instances: Vec<Ebb> = (0..2)
        .map(|i| {
            Ebb::start(&[
                "--bind",
                &backends[i].to_string(),
                "--workers",
                "2",
                "--reuse-port",
                "--pid-file",
                pid_files[i].to_str().unwrap(),
            ])
        })
        .collect();
    let config = render(
        "nginx.conf.template",
        &[
            ("EBB_FRONTEND", front.to_string()),
            ("EBB_BACKEND_1", backends[0].to_string()),
            ("EBB_BACKEND_2", backends[1].to_string()),
        ],
    );
    let config_path = dir.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(&config_path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"]);
    let mut proxy = Proxy::start("nginx", command);
    proxy.wait_serving(front);

    let load = Load::start(front, shape());
    thread::sleep(Duration::from_millis(1000));
    let mut marks = vec![load.completed()];
    let mut last = Vec::new();
    for (i, pid_file) in pid_files.iter().enumerate() {
        let old = read_pid_file(pid_file).expect("a pid file");
        let signalled = Instant::now();
        assert!(kill(old, libc::SIGUSR2));
        let new = wait_pid_file_change(pid_file, Some(old), BOUND)
            .unwrap_or_else(|| panic!("no successor:\n{}", instances[i].log()));
        let ready = signalled.elapsed();
        strays.0.push(new);
        let (_, exited) = wait_gone(old, BOUND).expect("the old process exits");
        eprintln!(
            "ebb{}: {old} -> {new}: successor ready {:.1} ms after SIGUSR2, old process exited \
             {:.1} ms after SIGUSR2",
            i + 1,
            ms(ready),
            ms(exited - signalled)
        );
        last.push(new);
        thread::sleep(Duration::from_millis(1000));
        marks.push(load.completed());
    }
    let stats = load.stop();
    let error_log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    let upstream_errors = error_log.lines().filter(|l| l.contains("upstream")).count();
    eprintln!(
        "through nginx: {} requests ({} POST) on {} client connections; before the upgrades {}, \
         during each upgrade {:?}; nginx logged {upstream_errors} upstream errors; failed {}",
        stats.completed,
        stats.posts,
        stats.connections,
        marks[0],
        marks.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>(),
        stats.failures.len(),
    );
    assert!(
        stats.failures.is_empty(),
        "failed requests:\n{}\nnginx error log:\n{error_log}",
        stats.failures.join("\n"),
    );
    assert!(stats.connections * 4 < stats.completed, "{stats:?}");
    for instance in &instances {
        // The successor took both reuse-port sockets, and the old process
        // lost nothing in its drain.
        assert!(instance.wait_for_log("using 2 listener(s) inherited", BOUND));
        assert!(instance.wait_for_log("drain complete after hand-off", BOUND));
        let log = instance.log();
        let report = log
            .lines()
            .find(|l| l.contains("drain complete after hand-off"))
            .unwrap();
        assert!(
            report.contains("rejected 0, cut 0, upgraded 0 (cut 0), reset-risk closes 0"),
            "{log}"
        );
    }
    for pid in last {
        assert!(kill(pid, libc::SIGTERM));
        assert_eq!(wait_gone(pid, BOUND).expect("exits").0, Some(0));
    }
    drop(proxy);
}
