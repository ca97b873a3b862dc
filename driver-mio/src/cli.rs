//! The `ebb` binary's command line. Hand-parsed: a handful of flags of three
//! shapes do not need a parser crate.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ebb_mio::{Builder, Config, DrainReport, Forced};

use crate::demo::Demo;

/// The exit statuses, printed after the usage by `--help`. A supervisor or a
/// deploy script can tell a complete drain from one that lost requests.
pub const EXIT_STATUS: &str = "\
exit status:
  0  stopped after a complete drain: every request begun was answered
  1  could not start, or a worker failed
  2  bad usage
  3  the drain deadline passed: what was still open was cut (the drain report names it)
  4  a second SIGTERM or SIGINT forced the exit";

/// Usage text for `--help` and errors.
pub const USAGE: &str = "\
usage: ebb [options]
  --bind ADDR                 listen address, IP:PORT or HOST:PORT (default 127.0.0.1:8080; env PORT overrides the port)
  --workers N                 worker threads, at least 1 (default: available CPUs)
  --reuse-port                one SO_REUSEPORT listener per worker; other processes may share the port
  --drain-timeout SECONDS     drain deadline, may be fractional (default 30; env SHUTDOWN_TIMEOUT_S overrides)
  --pre-stop SECONDS          keep serving this long after SIGTERM while /healthz answers 503 (default 0)
  --keep-alive-timeout SECONDS  idle keep-alive connections kept this long (default 60; 0: close after each response)
  --max-body BYTES            largest request body /echo answers (default 1048576)
  --whole-bodies              hand request bodies over whole, up to --max-body (413 over it), not streamed
  --header-timeout SECONDS    from a request's first byte to the end of its head, else 408 (default 5)
  --min-body-rate BYTES       slowest body in bytes/s once the grace has passed, else 408 (default 500; 0: off)
  --body-rate-grace SECONDS   how long a request may take before the body rate applies (default 10)
  --new-connection-timeout SECONDS  how long a new connection may stay silent (default 10)
  --no-access-log             no access log (by default: one logfmt line per request, marked `access`)
  -v                          more log output (-vv for trace)
  -V, --version               print `ebb VERSION` and exit
  -h, --help                  this text
  --pid-file PATH             write the pid here once serving (a successor rewrites it)
  --upgrade-timeout SECONDS   how long a hot upgrade waits for the successor to serve (default 30)
  --upgrade-command PATH      the successor a hot upgrade starts, with the same arguments (default: this binary)
SIGTERM, SIGINT or SIGQUIT drains, a second one forces the exit; SIGUSR2 starts a hot upgrade;
SIGHUP and SIGUSR1 are logged and ignored.";

/// The parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    /// Listen address.
    pub bind: SocketAddr,
    /// Worker threads; `None` for one per CPU.
    pub workers: Option<usize>,
    /// `SO_REUSEPORT`.
    pub reuse_port: bool,
    /// Request bodies are handed over whole, not streamed.
    pub whole_bodies: bool,
    /// Drain deadline, if set.
    pub drain_timeout: Option<Duration>,
    /// Pre-stop window, if set.
    pub pre_stop: Option<Duration>,
    /// Keep-alive idle timeout, if set.
    pub keep_alive_timeout: Option<Duration>,
    /// Body limit, if set.
    pub max_body: Option<u64>,
    /// Head read timeout, if set.
    pub header_timeout: Option<Duration>,
    /// Minimum body rate in bytes per second, if set.
    pub min_body_rate: Option<u64>,
    /// Grace before the body rate applies, if set.
    pub body_rate_grace: Option<Duration>,
    /// Silence allowed before a new connection's first request, if set.
    pub new_connection_timeout: Option<Duration>,
    /// One access-log line per request (on unless `--no-access-log`).
    pub access_log: bool,
    /// 0: info, 1: debug, 2+: trace.
    pub verbosity: u8,
    /// `--help` was given.
    pub help: bool,
    /// `--version` was given.
    pub version: bool,
    /// Where to write the pid, if set.
    pub pid_file: Option<PathBuf>,
    /// How long a hot upgrade waits for the successor, if set.
    pub upgrade_timeout: Option<Duration>,
    /// The successor's program, if not this binary.
    pub upgrade_command: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: None,
            reuse_port: false,
            whole_bodies: false,
            drain_timeout: None,
            pre_stop: None,
            keep_alive_timeout: None,
            max_body: None,
            header_timeout: None,
            min_body_rate: None,
            body_rate_grace: None,
            new_connection_timeout: None,
            access_log: true,
            verbosity: 0,
            help: false,
            version: false,
            pid_file: None,
            upgrade_timeout: None,
            upgrade_command: None,
        }
    }
}

/// Parses flags (`--flag value` or `--flag=value`), then applies the
/// environment through `env`: `PORT` replaces the port, `SHUTDOWN_TIMEOUT_S`
/// the drain timeout.
pub fn parse(
    flags: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Args, String> {
    let mut args = Args::default();
    let mut flags = flags.into_iter();
    while let Some(flag) = flags.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (flag, None),
        };
        // `--reuse-port=false` would otherwise turn reuse on.
        let switch = || match &inline {
            Some(value) => Err(format!("{name} takes no value, but was given {value:?}")),
            None => Ok(true),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| flags.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--bind" => args.bind = bind_address(&name, &value()?)?,
            "--workers" => args.workers = Some(workers(&name, &value()?)?),
            "--reuse-port" => args.reuse_port = switch()?,
            "--whole-bodies" => args.whole_bodies = switch()?,
            "--drain-timeout" => args.drain_timeout = Some(seconds(&name, &value()?)?),
            "--pre-stop" => args.pre_stop = Some(seconds(&name, &value()?)?),
            "--keep-alive-timeout" => args.keep_alive_timeout = Some(seconds(&name, &value()?)?),
            "--max-body" => args.max_body = Some(parse_value(&name, &value()?)?),
            "--header-timeout" => args.header_timeout = Some(seconds(&name, &value()?)?),
            "--min-body-rate" => args.min_body_rate = Some(parse_value(&name, &value()?)?),
            "--body-rate-grace" => args.body_rate_grace = Some(seconds(&name, &value()?)?),
            "--new-connection-timeout" => {
                args.new_connection_timeout = Some(seconds(&name, &value()?)?)
            }
            "--no-access-log" => args.access_log = !switch()?,
            "-h" | "--help" => args.help = switch()?,
            "-V" | "--version" => args.version = switch()?,
            "--pid-file" => args.pid_file = Some(path(&name, value()?)?),
            "--upgrade-timeout" => args.upgrade_timeout = Some(seconds(&name, &value()?)?),
            "--upgrade-command" => args.upgrade_command = Some(path(&name, value()?)?),
            v if v.len() > 1 && v.starts_with('-') && v[1..].bytes().all(|b| b == b'v') => {
                args.verbosity = args.verbosity.saturating_add((v.len() - 1) as u8);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Some(port) = env("PORT") {
        args.bind.set_port(parse_value("PORT", &port)?);
    }
    if let Some(timeout) = env("SHUTDOWN_TIMEOUT_S") {
        args.drain_timeout = Some(seconds("SHUTDOWN_TIMEOUT_S", &timeout)?);
    }
    // A zero that would refuse every request is bad usage, named by its flag.
    if let Err(e) = args.config().validate() {
        let flag = match e.field {
            "header_read_timeout" => "--header-timeout",
            "new_connection_timeout" => "--new-connection-timeout",
            other => other,
        };
        return Err(format!("{flag} 0: {}", e.effect));
    }
    if args.upgrade_timeout == Some(Duration::ZERO) {
        return Err("--upgrade-timeout 0: every hot upgrade would fail".to_owned());
    }
    Ok(args)
}

/// A path: an empty one names no file.
fn path(name: &str, value: String) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err(format!("{name}: an empty path"));
    }
    Ok(value.into())
}

/// A count of workers: 0 would serve nothing, so it is bad usage rather
/// than quietly one.
fn workers(name: &str, value: &str) -> Result<usize, String> {
    match parse_value(name, value)? {
        0 => Err(format!("{name} 0: a server needs at least one worker")),
        n => Ok(n),
    }
}

fn parse_value<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name}: cannot parse {value:?}"))
}

/// An address to listen on: `IP:PORT`, or `HOST:PORT` with a name such as
/// `localhost`, which is resolved now and taken at its first address, as
/// std's `TcpListener::bind` does with a name.
fn bind_address(name: &str, value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.trim().parse() {
        return Ok(addr);
    }
    let mut resolved = value
        .trim()
        .to_socket_addrs()
        .map_err(|e| format!("{name}: cannot resolve {value:?} as HOST:PORT ({e})"))?;
    resolved
        .next()
        .ok_or_else(|| format!("{name}: {value:?} resolves to no address"))
}

fn seconds(name: &str, value: &str) -> Result<Duration, String> {
    let secs: f64 = parse_value(name, value)?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{name}: {value:?} is not a duration in seconds"))
}

impl Args {
    /// Core's limits and timeouts: the defaults, with what these arguments set.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        if let Some(t) = self.drain_timeout {
            config.drain_timeout = t;
        }
        if let Some(t) = self.pre_stop {
            config.pre_stop = t;
        }
        if let Some(t) = self.keep_alive_timeout {
            config.keep_alive_timeout = t;
        }
        if let Some(bytes) = self.max_body {
            config.max_body_bytes = bytes;
        }
        if let Some(t) = self.header_timeout {
            config.header_read_timeout = t;
        }
        if let Some(rate) = self.min_body_rate {
            config.min_body_rate_bytes_per_sec = rate;
        }
        if let Some(t) = self.body_rate_grace {
            config.body_rate_grace = t;
        }
        if let Some(t) = self.new_connection_timeout {
            config.new_connection_timeout = t;
        }
        config
    }

    /// A builder configured from these arguments (socket activation on).
    pub fn builder(&self) -> Builder {
        let mut builder = Builder::new()
            .bind(self.bind)
            .reuse_port(self.reuse_port)
            .access_log(self.access_log)
            .socket_activation(true)
            .config(self.config())
            // The demo reads bodies as they arrive (`/upload`, `/echo`).
            .stream_request_bodies(!self.whole_bodies);
        if let Some(workers) = self.workers {
            builder = builder.workers(workers);
        }
        if let Some(path) = &self.pid_file {
            builder = builder.pid_file(path);
        }
        if let Some(t) = self.upgrade_timeout {
            builder = builder.upgrade_timeout(t);
        }
        if let Some(program) = &self.upgrade_command {
            // The same arguments as this process.
            builder = builder.upgrade_command(program, std::env::args_os().skip(1));
        }
        builder
    }
}

/// The `ebb` binary: parse, log, serve the demo until drained.
pub fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(args) => args,
        Err(e) => {
            say(std::io::stderr(), format_args!("ebb: {e}\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    if args.help {
        say(std::io::stdout(), format_args!("{USAGE}\n{EXIT_STATUS}"));
        return ExitCode::SUCCESS;
    }
    if args.version {
        say(
            std::io::stdout(),
            format_args!("ebb {}", env!("CARGO_PKG_VERSION")),
        );
        return ExitCode::SUCCESS;
    }
    // Before the demo's timer thread exists, so that it inherits the mask
    // and no stop signal can land on it while `serve` installs its handlers.
    if let Err(e) = ebb_mio::hold_back_signals() {
        say(
            std::io::stderr(),
            format_args!("ebb: cannot hold back signals: {e}"),
        );
        return ExitCode::FAILURE;
    }
    crate::logger::init(args.verbosity);
    let config = args.config();
    // An upgraded echo is idle as long as a keep-alive connection may be
    // (with keep-alive off, as long as it is by default).
    let echo_idle = Some(config.keep_alive_timeout)
        .filter(|idle| !idle.is_zero())
        .unwrap_or(Config::default().keep_alive_timeout);
    let served = Demo::new(config.max_body_bytes, echo_idle)
        .and_then(|demo| args.builder().serve_handler(demo));
    let status = match served {
        Ok(report) => ExitCode::from(exit_status(&report)),
        Err(e) => {
            log::error!("ebb: {e}");
            ExitCode::FAILURE
        }
    };
    crate::logger::finish();
    status
}

/// Writes `text` and a newline to `out`, as `println!` does, but a closed
/// pipe (`ebb --help | head -1`) is not a panic: there is no one to tell.
fn say(mut out: impl std::io::Write, text: std::fmt::Arguments<'_>) {
    let _ = writeln!(out, "{text}");
}

/// The exit status after a drain that ended with `report`, as
/// [`EXIT_STATUS`] documents: 0 only when nothing forced the exit.
pub fn exit_status(report: &DrainReport) -> u8 {
    match report.forced {
        None => 0,
        Some(Forced::Deadline) => 3,
        Some(Forced::SecondTerminate) => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_mio::Time;

    fn args(flags: &[&str], env: &[(&str, &str)]) -> Result<Args, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(flags.iter().map(|s| s.to_string()), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn flags_in_both_shapes_parse() {
        let a = args(
            &[
                "--bind",
                "0.0.0.0:9000",
                "--workers=3",
                "--reuse-port",
                "--whole-bodies",
                "--drain-timeout",
                "2.5",
                "-vv",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(a.bind, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(a.workers, Some(3));
        assert!(a.reuse_port);
        assert!(a.whole_bodies);
        assert_eq!(a.drain_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(a.verbosity, 2);
        assert!(a.access_log, "on unless turned off");
        assert!(!args(&["--no-access-log"], &[]).unwrap().access_log);
    }

    #[test]
    fn environment_overrides_port_and_drain_timeout() {
        let a = args(
            &["--drain-timeout", "9"],
            &[("PORT", "1234"), ("SHUTDOWN_TIMEOUT_S", "0.5")],
        )
        .unwrap();
        assert_eq!(a.bind, "127.0.0.1:1234".parse().unwrap());
        assert_eq!(a.drain_timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn bind_takes_a_host_name_at_its_first_address() {
        let a = args(&["--bind", "localhost:9000"], &[("PORT", "9001")]).unwrap();
        assert!(a.bind.ip().is_loopback(), "{}", a.bind);
        assert_eq!(a.bind.port(), 9001);
        assert_eq!(
            args(&["--bind", "[::1]:9000"], &[]).unwrap().bind,
            "[::1]:9000".parse().unwrap()
        );
        assert!(
            args(&["--bind", "localhost"], &[]).is_err(),
            "a port is needed"
        );
        assert!(args(&["--bind", "no-such-host.invalid:80"], &[]).is_err());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(args(&["--workers"], &[]).is_err());
        assert_eq!(
            args(&["--workers", "0"], &[]).unwrap_err(),
            "--workers 0: a server needs at least one worker"
        );
        assert!(args(&["--drain-timeout", "-1"], &[]).is_err());
        assert!(args(&["--nope"], &[]).is_err());
    }

    #[test]
    fn a_switch_given_a_value_is_an_error() {
        for switch in [
            "--reuse-port",
            "--whole-bodies",
            "--no-access-log",
            "--help",
            "--version",
        ] {
            for value in ["false", "no", ""] {
                let e = args(&[&format!("{switch}={value}")], &[]).unwrap_err();
                assert!(e.starts_with(&format!("{switch} takes no value")), "{e}");
            }
        }
    }

    #[test]
    fn an_empty_path_and_a_zero_upgrade_timeout_are_errors() {
        for flag in ["--pid-file", "--upgrade-command"] {
            assert_eq!(
                args(&[flag, ""], &[]).unwrap_err(),
                format!("{flag}: an empty path")
            );
        }
        assert_eq!(
            args(&["--upgrade-timeout", "0"], &[]).unwrap_err(),
            "--upgrade-timeout 0: every hot upgrade would fail"
        );
        // Too long for the clock is allowed: it never runs out.
        let a = args(&["--upgrade-timeout", "1e19"], &[]).unwrap();
        assert!(a.upgrade_timeout.unwrap() > Duration::from_secs(u64::MAX / 2));
    }

    #[test]
    fn timeout_and_rate_flags_set_their_config_fields() {
        let a = args(
            &[
                "--header-timeout",
                "1.5",
                "--min-body-rate=100",
                "--body-rate-grace",
                "2",
                "--new-connection-timeout",
                "0.25",
                "--keep-alive-timeout",
                "0",
                "--drain-timeout",
                "3",
            ],
            &[],
        )
        .unwrap();
        let config = a.config();
        assert_eq!(config.header_read_timeout, Duration::from_millis(1500));
        assert_eq!(config.min_body_rate_bytes_per_sec, 100);
        assert_eq!(config.body_rate_grace, Duration::from_secs(2));
        assert_eq!(config.new_connection_timeout, Duration::from_millis(250));
        assert_eq!(config.keep_alive_timeout, Duration::ZERO);
        assert_eq!(config.drain_timeout, Duration::from_secs(3));
        // Fields no flag names keep their defaults.
        assert_eq!(
            config.body_read_timeout,
            Config::default().body_read_timeout
        );
        assert_eq!(args(&[], &[]).unwrap().config(), Config::default());
        assert!(args(&["--min-body-rate", "-1"], &[]).is_err());
        assert!(args(&["--header-timeout", "soon"], &[]).is_err());
    }

    #[test]
    fn version_flag_in_both_spellings() {
        assert!(args(&["--version"], &[]).unwrap().version);
        assert!(args(&["-V"], &[]).unwrap().version);
    }

    #[test]
    fn a_zero_that_would_refuse_every_request_is_bad_usage() {
        let e = args(&["--header-timeout", "0"], &[]).unwrap_err();
        assert!(e.starts_with("--header-timeout 0: "), "{e}");
        let e = args(&["--new-connection-timeout=0"], &[]).unwrap_err();
        assert!(e.starts_with("--new-connection-timeout 0: "), "{e}");
        assert!(args(&["--keep-alive-timeout", "0", "--drain-timeout", "0"], &[]).is_ok());
    }

    #[test]
    fn exit_status_is_zero_only_for_a_complete_drain() {
        let report = |forced: Option<Forced>| DrainReport {
            forced,
            requests_completed: 3,
            requests_cut: u64::from(forced.is_some()),
            ..DrainReport::new(Time::ZERO)
        };
        assert_eq!(exit_status(&report(None)), 0);
        assert_eq!(exit_status(&report(Some(Forced::Deadline))), 3);
        assert_eq!(exit_status(&report(Some(Forced::SecondTerminate))), 4);
    }

    #[test]
    fn upgrade_flags_parse() {
        let a = args(
            &[
                "--pid-file",
                "/run/ebb.pid",
                "--upgrade-timeout=2.5",
                "--upgrade-command",
                "/opt/ebb/current/ebb",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(a.pid_file, Some(PathBuf::from("/run/ebb.pid")));
        assert_eq!(a.upgrade_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(
            a.upgrade_command,
            Some(PathBuf::from("/opt/ebb/current/ebb"))
        );
        assert!(args(&["--upgrade-timeout", "soon"], &[]).is_err());
    }
}
