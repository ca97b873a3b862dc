//! Every knob of one run, derived from its seed (swarm testing: each seed
//! switches some client kinds off and skews the weights of the rest).

use std::fmt;
use std::time::Duration;

use ebb_core::Config;

use crate::client::Kind;
use crate::rng::Rng;

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
    /// Percent of responses with a large body (written as a second slice).
    pub large_response_percent: u64,
    /// Listen backlog; connections beyond it are refused.
    pub backlog: usize,
    /// Longest delay between a connection entering the backlog and the
    /// driver accepting it while serving.
    pub accept_delay: Duration,
    /// Longest keep-alive think time between a client's requests.
    pub think: Duration,
    /// When the first terminate arrives.
    pub terminate_at: Duration,
    /// When a second terminate arrives, if one does.
    pub second_terminate_at: Option<Duration>,
    /// The server's configuration.
    pub config: Config,
}

impl Knobs {
    /// Derives every knob from `seed`.
    // `Config` is `#[non_exhaustive]`: outside core it can only be made by
    // `default()` and then changed field by field.
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
        config.max_linger_bytes = rng.log(64 * 1024, 1024 * 1024);
        config.header_read_timeout = rng.micros(50_000, 5_000_000);
        config.body_read_timeout = rng.micros(50_000, 5_000_000);
        config.keep_alive_timeout = rng.micros(100_000, 10_000_000);
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
        let terminate_at = rng.micros(10_000, 2_000_000);
        let second_terminate_at = rng
            .percent(20)
            .then(|| terminate_at + rng.upto(config.pre_stop + config.drain_timeout * 6 / 5));
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
            large_response_percent: rng.below(10),
            backlog: rng.log(1, 128) as usize,
            accept_delay: rng.micros(1, 50_000),
            think: rng.micros(1, 3_000_000),
            terminate_at,
            second_terminate_at,
            config,
        }
    }
}

impl fmt::Display for Knobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        write!(
            f,
            "seed {} clients {} (rush {}%) kinds",
            self.seed, self.clients, self.rush_percent
        )?;
        for (kind, w) in Kind::ALL.iter().zip(self.weights) {
            if w > 0 {
                write!(f, " {kind:?}={w}")?;
            }
        }
        write!(
            f,
            " | latency {:?}..{:?} mss {} pipe {} read_buf {} client_read_delay {:?} \
             app instant {}% delay<={:?} large {}% backlog {} accept_delay<={:?} think<={:?} \
             terminate {:?} second {:?} | max_body {} max_pipelined {} max_linger {} \
             header {:?} body {:?} keep_alive {:?} write_stall {:?} linger {:?} pre_stop {:?} \
             drain {:?} first_byte_grace {:?} idle_close_after {:?}",
            self.latency.0,
            self.latency.1,
            self.mss,
            self.pipe_bytes,
            self.read_buf,
            self.client_read_delay,
            self.app_instant_percent,
            self.app_delay,
            self.large_response_percent,
            self.backlog,
            self.accept_delay,
            self.think,
            self.terminate_at,
            self.second_terminate_at,
            c.max_body_bytes,
            c.max_pipelined_bytes,
            c.max_linger_bytes,
            c.header_read_timeout,
            c.body_read_timeout,
            c.keep_alive_timeout,
            c.write_stall_timeout,
            c.linger_timeout,
            c.pre_stop,
            c.drain_timeout,
            c.first_byte_grace,
            c.idle_close_after,
        )
    }
}
