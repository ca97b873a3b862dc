//! Every knob of one run, derived from its seed (swarm testing: each seed
//! switches some client kinds off and skews the weights of the rest).

use std::fmt;
use std::time::Duration;

use ebb_core::Config;
use ebb_testkit::rng::Rng;

use crate::client::Kind;

/// When the listener is handed to a successor (`handle_handoff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// At the terminate's time, in its place: a hot upgrade.
    Instead,
    /// This long after the terminate (in PreStop, or in the drain).
    After(Duration),
}

/// The shape of one simulated run. Printed first, so a failure can be read
/// against the world that produced it.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// The seed every other knob came from.
    pub seed: u64,
    /// How many clients arrive.
    pub clients: usize,
    /// Weight of each client kind (indexed by [`Kind::ALL`]); 0 = switched off.
    pub weights: [u32; Kind::ALL.len()],
    /// Clients start uniformly within this span from time zero...
    pub arrival_span: Duration,
    /// ...except this percentage, who rush in around the terminate (so the
    /// backlog is full when the drain begins).
    pub rush_percent: u64,
    /// One-way latency of a connection, chosen per connection in this range.
    pub latency: (Duration, Duration),
    /// Largest segment the network delivers at once.
    pub mss: usize,
    /// Bytes a direction of a connection holds in flight plus unread
    /// (socket send plus receive buffer): the writer blocks beyond it.
    pub pipe_bytes: usize,
    /// The server driver's read buffer.
    pub read_buf: usize,
    /// Longest delay before a client reads what arrived.
    pub client_read_delay: Duration,
    /// Percent of requests the application answers at once.
    pub app_instant_percent: u64,
    /// Longest application delay (may pass the drain deadline).
    pub app_delay: Duration,
    /// Percent of requests the application fails (an invalid response, or
    /// no answer at all); 0 in about half the seeds.
    pub app_fault_percent: u64,
    /// Percent of responses with a large body (written as a second slice).
    pub large_response_percent: u64,
    /// Percent of the application's answers whose body it streams (0 in
    /// about half the seeds); slow readers' requests always stream.
    pub stream_percent: u64,
    /// Of streamed responses, percent whose producer stops without ending
    /// the stream (only the deadline ends it).
    pub stream_stop_percent: u64,
    /// Of streamed responses with a declared length, percent that send more
    /// or fewer bytes than declared (core closes the connection).
    pub stream_mismatch_percent: u64,
    /// Longest virtual time between two pieces of a streamed body.
    pub stream_gap: Duration,
    /// Longest wait between the application's reads of a streamed request
    /// body (`config.stream_request_bodies` says whether bodies stream).
    pub upload_read_gap: Duration,
    /// Percent of streamed request bodies the application answers without
    /// reading them to the end.
    pub upload_unread_percent: u64,
    /// Percent of upgraded connections whose application ignores the
    /// drain's stop notice (the deadline cuts them).
    pub upgrade_ignore_stop_percent: u64,
    /// Listen backlog; connections beyond it are refused.
    pub backlog: usize,
    /// Longest delay between a connection entering the backlog and the
    /// driver accepting it while serving.
    pub accept_delay: Duration,
    /// Longest keep-alive think time between a client's requests.
    pub think: Duration,
    /// Most requests a pipelining client writes at once: 8, or in about a
    /// third of the seeds up to 64, enough to outrun `max_pipelined_bytes`
    /// so that reading pauses with requests left unread in the socket when
    /// the drain begins. Drawn last, so the other knobs of a seed are what
    /// they were before it existed.
    pub pipeline_depth: usize,
    /// Longest delay between bytes becoming readable in a server socket and
    /// the driver reading them (zero in half the seeds, as the mio driver,
    /// which reads every ready socket before it takes a stop): a driver
    /// busy elsewhere, or one that reads in its own time, leaves what
    /// clients sent just before the stop unread in the socket when the
    /// drain begins. Drawn last, like `pipeline_depth` before it.
    pub read_lag: Duration,
    /// When the first terminate arrives.
    pub terminate_at: Duration,
    /// When a second terminate arrives, if one does.
    pub second_terminate_at: Option<Duration>,
    /// Whether, and when, the listener is handed to a successor.
    pub handoff: Option<Handoff>,
    /// The server's configuration.
    pub config: Config,
}

impl Knobs {
    /// The weight of client `kind` (0: switched off).
    pub fn weight(&self, kind: Kind) -> u32 {
        let i = Kind::ALL.iter().position(|&x| x == kind).expect("a kind");
        self.weights[i]
    }

    /// Derives every knob from `seed`.
    // `Config` is made by `default()` and then set field by field, each value
    // drawn in turn from the seed's stream: the draw order reads top to
    // bottom, and fields this does not vary keep their defaults.
    #[allow(clippy::field_reassign_with_default)]
    pub fn from_seed(seed: u64) -> Knobs {
        let mut rng = Rng::new(seed ^ 0x6b6e_6f62_735f_6562);
        let mut weights = [0u32; Kind::ALL.len()];
        while weights.iter().all(|&w| w == 0) {
            for w in &mut weights {
                *w = if rng.percent(70) {
                    rng.range(1, 20).pow(2) as u32
                } else {
                    0
                };
            }
        }
        let mut config = Config::default();
        config.max_body_bytes = rng.log(1024, 64 * 1024);
        config.max_pipelined_bytes = rng.log(512, 64 * 1024) as usize;
        // A quarter of the seeds hand requests over one at a time.
        config.max_pipelined_requests = if rng.percent(25) {
            1
        } else {
            rng.log(2, 32) as usize
        };
        config.max_linger_bytes = rng.log(64 * 1024, 1024 * 1024);
        config.header_read_timeout = rng.micros(50_000, 5_000_000);
        config.body_read_timeout = rng.micros(50_000, 5_000_000);
        config.keep_alive_timeout = rng.micros(100_000, 10_000_000);
        // About one seed in twenty turns keep-alive off (every response
        // closes its connection, and nothing may be handed over behind
        // one): the shortest draws, so that no other knob of any seed
        // moves.
        if config.keep_alive_timeout < Duration::from_millis(125) {
            config.keep_alive_timeout = Duration::ZERO;
        }
        // Long enough that a client that keeps reading never stalls a write:
        // a stall would cut a response outside the deadline.
        config.write_stall_timeout = rng.micros(1_000_000, 30_000_000);
        config.linger_timeout = rng.micros(10_000, 2_000_000);
        config.pre_stop = if rng.percent(50) {
            Duration::ZERO
        } else {
            rng.micros(1_000, 1_000_000)
        };
        config.drain_timeout = rng.micros(50_000, 5_000_000);
        config.first_byte_grace = rng.micros(1_000, 1_000_000);
        config.idle_close_after = rng.micros(1_000, 500_000);
        config.new_connection_timeout = rng.micros(100_000, 10_000_000);
        if rng.percent(50) {
            config.min_body_rate_bytes_per_sec = rng.log(200, 5_000);
            config.body_rate_grace = rng.micros(10_000, 1_000_000);
        } else {
            config.min_body_rate_bytes_per_sec = 0;
        }
        config.stream_request_bodies = rng.percent(30);
        // Bodies that stream have their own bound; the same one here, so a
        // large body is refused alike either way.
        config.max_streamed_body_bytes = config.max_body_bytes;
        // Small enough to hold producers and uploads back; not so small that
        // a large stream takes thousands of rounds.
        config.max_stream_buffer_bytes = rng.log(1024, 64 * 1024) as usize;
        let terminate_at = rng.micros(10_000, 2_000_000);
        let second_terminate_at = rng
            .percent(20)
            .then(|| terminate_at + rng.upto(config.pre_stop + config.drain_timeout * 6 / 5));
        let handoff = match rng.below(10) {
            0 => Some(Handoff::Instead),
            1 => Some(Handoff::After(
                rng.upto(config.pre_stop + config.drain_timeout / 4),
            )),
            _ => None,
        };
        let latency_lo = rng.micros(1, 20_000);
        let latency_hi = latency_lo + rng.micros(1, 30_000);
        Knobs {
            seed,
            clients: rng.log(8, 150) as usize,
            weights,
            arrival_span: terminate_at + config.pre_stop + rng.upto(config.drain_timeout / 4),
            rush_percent: rng.below(50),
            latency: (latency_lo, latency_hi),
            // Mostly realistic segments; some seeds cut everything tiny.
            mss: if rng.percent(20) {
                rng.log(1, 16) as usize
            } else {
                rng.log(64, 8192) as usize
            },
            pipe_bytes: rng.log(256, 256 * 1024) as usize,
            read_buf: rng.log(1, 16 * 1024) as usize,
            client_read_delay: if rng.percent(50) {
                Duration::ZERO
            } else {
                rng.micros(1, 50_000)
            },
            app_instant_percent: rng.below(101),
            app_delay: rng.micros(1, (config.drain_timeout * 3 / 2).as_micros() as u64),
            app_fault_percent: if rng.percent(50) { 0 } else { rng.range(1, 20) },
            large_response_percent: rng.below(10),
            stream_percent: if rng.percent(50) { 0 } else { rng.range(1, 40) },
            stream_stop_percent: if rng.percent(50) { 0 } else { rng.range(1, 20) },
            stream_mismatch_percent: if rng.percent(50) { 0 } else { rng.range(1, 20) },
            stream_gap: rng.micros(1, (config.drain_timeout / 4).as_micros() as u64),
            upload_read_gap: if rng.percent(50) {
                Duration::ZERO
            } else {
                rng.micros(1, 200_000)
            },
            upload_unread_percent: if rng.percent(50) { 0 } else { rng.range(1, 30) },
            upgrade_ignore_stop_percent: rng.below(60),
            backlog: rng.log(1, 128) as usize,
            accept_delay: rng.micros(1, 50_000),
            think: rng.micros(1, 3_000_000),
            pipeline_depth: if rng.percent(50) {
                rng.log(9, 256) as usize
            } else {
                8
            },
            read_lag: if rng.percent(50) {
                Duration::ZERO
            } else {
                rng.micros(1, 20_000)
            },
            terminate_at,
            second_terminate_at,
            handoff,
            config,
        }
    }
}

impl fmt::Display for Knobs {
    /// One knob per line, `name value`, the seed first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "seed {}", self.seed)?;
        /// Prints a string as it is, among `Debug` values.
        struct Plain(String);
        impl fmt::Debug for Plain {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        let kinds: Vec<String> = Kind::ALL
            .iter()
            .zip(self.weights)
            .filter(|(_, w)| *w > 0)
            .map(|(kind, w)| format!("{kind:?}={w}"))
            .collect();
        let kinds = Plain(kinds.join(" "));
        let lines: [(&str, &dyn fmt::Debug); 46] = [
            ("clients", &self.clients),
            ("client_kinds", &kinds),
            ("arrival_span", &self.arrival_span),
            ("rush_percent", &self.rush_percent),
            ("latency", &(self.latency.0..self.latency.1)),
            ("mss", &self.mss),
            ("pipe_bytes", &self.pipe_bytes),
            ("read_buf", &self.read_buf),
            ("client_read_delay", &self.client_read_delay),
            ("app_instant_percent", &self.app_instant_percent),
            ("app_delay", &self.app_delay),
            ("app_fault_percent", &self.app_fault_percent),
            ("large_response_percent", &self.large_response_percent),
            ("stream_percent", &self.stream_percent),
            ("stream_stop_percent", &self.stream_stop_percent),
            ("stream_mismatch_percent", &self.stream_mismatch_percent),
            ("stream_gap", &self.stream_gap),
            ("upload_read_gap", &self.upload_read_gap),
            ("upload_unread_percent", &self.upload_unread_percent),
            ("upgrade_ignore_stop", &self.upgrade_ignore_stop_percent),
            ("backlog", &self.backlog),
            ("accept_delay", &self.accept_delay),
            ("think", &self.think),
            ("pipeline_depth", &self.pipeline_depth),
            ("read_lag", &self.read_lag),
            ("terminate_at", &self.terminate_at),
            ("second_terminate_at", &self.second_terminate_at),
            ("handoff", &self.handoff),
            ("max_body_bytes", &c.max_body_bytes),
            ("max_pipelined_bytes", &c.max_pipelined_bytes),
            ("max_pipelined_requests", &c.max_pipelined_requests),
            ("max_linger_bytes", &c.max_linger_bytes),
            ("header_read_timeout", &c.header_read_timeout),
            ("body_read_timeout", &c.body_read_timeout),
            ("keep_alive_timeout", &c.keep_alive_timeout),
            ("new_connection_timeout", &c.new_connection_timeout),
            ("min_body_rate", &c.min_body_rate_bytes_per_sec),
            ("body_rate_grace", &c.body_rate_grace),
            ("write_stall_timeout", &c.write_stall_timeout),
            ("linger_timeout", &c.linger_timeout),
            ("pre_stop", &c.pre_stop),
            ("drain_timeout", &c.drain_timeout),
            ("first_byte_grace", &c.first_byte_grace),
            ("idle_close_after", &c.idle_close_after),
            ("stream_request_bodies", &c.stream_request_bodies),
            ("max_stream_buffer", &c.max_stream_buffer_bytes),
        ];
        for (i, (name, value)) in lines.iter().enumerate() {
            write!(f, "  {name:<23} {value:?}")?;
            if i + 1 < lines.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}
