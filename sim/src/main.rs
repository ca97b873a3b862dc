//! `ebb-sim`: run seeds, print each failure with its kind and replay command.
//!
//! ```text
//! cargo run -p ebb-sim --release -- --seeds N [--seed S] [--trace]
//! ```
//! `--seed S` alone runs seed S; with `--seeds N`, seeds S..S+N. `--seeds N`
//! alone starts from a clock-derived seed (printed). `--trace` prints every
//! event of every seed run. See the crate docs.
//!
//! Exit status:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every seed passed |
//! | 1 | a safety property failed (or core panicked) |
//! | 2 | usage |
//! | 3 | a liveness property failed |
//! | 4 | a drain report disagreed with the world |
//! | 5 | a seed gave two different runs |
//! | 6 | coverage: in a batch of at least 500 seeds, a situation some seeds' knobs made possible never happened |
//!
//! When seeds fail in different ways, the smallest of their codes. After
//! the throughput line come the coverage counters, one per line (`cover
//! <name> <count> in <seeds> seeds that enable it`), and the known gaps
//! between core and S7, counted (see `sim/src/check.rs`, `Cover`).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ebb_core::Forced;
use ebb_sim::client::Kind;
use ebb_sim::knobs::{Handoff, Knobs};
use ebb_sim::{run_seed, Failure, Outcome, TraceMode};

const USAGE: u8 = 2;
const COVERAGE: u8 = 6;

/// A batch at least this large must meet every situation its knobs enable.
const COVERAGE_MIN_SEEDS: u64 = 500;

/// One coverage counter: what it counts, in which seeds it can happen, and
/// how much of it a seed's outcome shows.
struct Counter {
    name: &'static str,
    enabled: fn(&Knobs) -> bool,
    count: fn(&Outcome) -> u64,
}

fn kind_on(k: &Knobs, kind: Kind) -> bool {
    k.weight(kind) > 0
}

/// Whether clients pipeline in seeds with `k`, and core may hand their
/// requests over ahead of their turn.
fn hands_ahead(k: &Knobs) -> bool {
    kind_on(k, Kind::Pipelined) && k.config.max_pipelined_requests > 1
}

/// Whether the application streams some responses in seeds with `k`.
fn streams(k: &Knobs) -> bool {
    k.stream_percent > 0 || kind_on(k, Kind::SlowReader)
}

/// `f` of the seed's drain report; 0 for a seed that never exited.
fn report(o: &Outcome, f: impl Fn(&ebb_core::DrainReport) -> u64) -> u64 {
    o.report.as_ref().map_or(0, f)
}

/// The situations every large batch must meet, each where its knobs allow.
const COUNTERS: &[Counter] = &[
    Counter {
        name: "backlog_accepted",
        enabled: |k| k.rush_percent > 0 && k.handoff != Some(Handoff::Instead),
        count: |o| report(o, |r| r.backlog_accepted),
    },
    Counter {
        name: "forced_by_deadline",
        enabled: |_| true,
        count: |o| report(o, |r| u64::from(r.forced == Some(Forced::Deadline))),
    },
    Counter {
        name: "forced_by_second_terminate",
        enabled: |k| k.second_terminate_at.is_some(),
        count: |o| report(o, |r| u64::from(r.forced == Some(Forced::SecondTerminate))),
    },
    Counter {
        name: "idle_closed",
        enabled: |k| kind_on(k, Kind::KeepAlive) || kind_on(k, Kind::Racing),
        count: |o| report(o, |r| r.idle_closed),
    },
    Counter {
        name: "silent_closed",
        enabled: |k| kind_on(k, Kind::Silent),
        count: |o| report(o, |r| r.silent_closed),
    },
    Counter {
        name: "completed_in_drain",
        enabled: |_| true,
        count: |o| report(o, |r| r.requests_completed),
    },
    Counter {
        name: "requests_cut",
        enabled: |_| true,
        count: |o| report(o, |r| r.requests_cut),
    },
    Counter {
        name: "reset_risk_closes",
        enabled: |_| true,
        count: |o| report(o, |r| r.reset_risk_closes),
    },
    Counter {
        name: "kept_open_in_drain",
        enabled: |k| kind_on(k, Kind::Pipelined) || kind_on(k, Kind::HalfClosing),
        count: |o| o.stats.cover.kept_open_in_drain,
    },
    Counter {
        name: "pre_stop_responses",
        enabled: |k| !k.config.pre_stop.is_zero(),
        count: |o| o.stats.cover.pre_stop_responses,
    },
    Counter {
        name: "kept_open_in_pre_stop",
        enabled: |k| !k.config.pre_stop.is_zero() && kind_on(k, Kind::Pipelined),
        count: |o| o.stats.cover.kept_open_in_pre_stop,
    },
    Counter {
        name: "handed_ahead",
        enabled: hands_ahead,
        count: |o| o.stats.cover.handed_ahead,
    },
    Counter {
        name: "answered_out_of_order",
        enabled: hands_ahead,
        count: |o| o.stats.cover.answered_out_of_order,
    },
    Counter {
        name: "app_faults_answered",
        enabled: |k| k.app_fault_percent > 0,
        count: |o| o.stats.faulted,
    },
    Counter {
        name: "farewells_read",
        enabled: |k| kind_on(k, Kind::Slowloris) || kind_on(k, Kind::CrlfTrickler),
        count: |o| o.stats.cover.farewells_read,
    },
    Counter {
        name: "handed_off",
        enabled: |k| k.handoff.is_some(),
        count: |o| report(o, |r| u64::from(r.handed_off)),
    },
    Counter {
        name: "successor_accepted",
        enabled: |k| k.handoff.is_some(),
        count: |o| o.stats.net.successor_accepted,
    },
    Counter {
        name: "successor_responses",
        enabled: |k| k.handoff.is_some(),
        count: |o| o.stats.cover.successor_responses,
    },
    Counter {
        name: "sent_past_close",
        enabled: |k| kind_on(k, Kind::Pipelined),
        count: |o| o.stats.clients.sent_past_close,
    },
    Counter {
        name: "crlf_trickler_408",
        enabled: |k| kind_on(k, Kind::CrlfTrickler),
        count: |o| o.stats.clients.crlf_408,
    },
    Counter {
        name: "slow_body_408",
        enabled: |k| kind_on(k, Kind::BodyTrickler) && k.config.min_body_rate_bytes_per_sec > 0,
        count: |o| o.stats.clients.slow_body_408,
    },
    Counter {
        name: "body_stopped_408",
        enabled: |k| kind_on(k, Kind::BodyStopper),
        count: |o| o.stats.clients.body_stopped_408,
    },
    Counter {
        name: "racing_answered_in_drain",
        enabled: |k| kind_on(k, Kind::Racing),
        count: |o| o.stats.clients.racing_in_drain,
    },
    Counter {
        name: "write_stalls",
        enabled: |k| kind_on(k, Kind::Stalling),
        count: |o| o.stats.cover.write_stalls,
    },
    Counter {
        name: "lingered_closes",
        enabled: |_| true,
        count: |o| o.stats.cover.lingered,
    },
    Counter {
        name: "stream_completed",
        enabled: streams,
        count: |o| o.stats.clients.streams_read,
    },
    Counter {
        name: "stream_cut",
        enabled: |k| streams(k) && k.stream_stop_percent > 0,
        count: |o| o.stats.cover.streams_cut,
    },
    Counter {
        name: "producer_stopped",
        enabled: |k| streams(k) && k.stream_stop_percent > 0,
        count: |o| o.stats.cover.producers_stopped,
    },
    Counter {
        name: "stream_backpressure",
        enabled: |k| kind_on(k, Kind::SlowReader),
        count: |o| o.stats.app.stream_backpressure,
    },
    Counter {
        name: "stream_length_mismatch",
        enabled: |k| streams(k) && k.stream_mismatch_percent > 0,
        count: |o| o.stats.app.length_mismatches,
    },
    Counter {
        name: "upload_streamed",
        enabled: |k| k.config.stream_request_bodies,
        count: |o| o.stats.app.uploads_read,
    },
    Counter {
        name: "upload_backpressured",
        enabled: |k| k.config.stream_request_bodies && !k.upload_read_gap.is_zero(),
        count: |o| o.stats.cover.uploads_backpressured,
    },
    Counter {
        name: "upgrade_echoed",
        enabled: |k| kind_on(k, Kind::Upgrading),
        count: |o| o.stats.clients.echoes_read,
    },
    Counter {
        name: "upgrade_stopped_by_notice",
        enabled: |k| kind_on(k, Kind::Upgrading),
        count: |o| o.stats.app.upgrades_stopped,
    },
    Counter {
        name: "upgrade_cut",
        enabled: |k| kind_on(k, Kind::Upgrading),
        count: |o| o.stats.cover.upgrades_cut,
    },
    Counter {
        name: "owed_requests_cut",
        enabled: |_| true,
        count: |o| o.stats.cover.owed_cut,
    },
];

/// Known gaps between core and S7, counted and printed, not failed (see
/// `Cover` in `sim/src/check.rs`).
const GAPS: &[Counter] = &[Counter {
    name: "closed_before_drain_dropped",
    enabled: |_| true,
    count: |o| o.stats.cover.closed_before_drain_dropped,
}];

/// What to run.
struct Args {
    start: u64,
    count: u64,
    trace: bool,
}

fn parse_args() -> Option<Args> {
    let mut args = std::env::args().skip(1);
    let (mut seeds, mut start, mut trace) = (None::<u64>, None::<u64>, false);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok());
        match a.as_str() {
            "--seeds" => seeds = Some(value()?),
            "--seed" => start = Some(value()?),
            "--trace" => trace = true,
            _ => return None,
        }
    }
    let count = match (seeds, start) {
        (Some(n), _) => n,
        (None, Some(_)) => 1,
        (None, None) => return None,
    };
    let start = start.unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64 % 1_000_000_000_000
    });
    Some(Args {
        start,
        count,
        trace,
    })
}

/// Runs `seed` again with a hashed trace: a different hash is a
/// determinism failure (unless the seed already failed otherwise).
fn check_determinism(seed: u64, first: &mut Outcome) {
    let first_hash = match first.trace_hash {
        Some(h) => h,
        None => run_seed(seed, TraceMode::Hash)
            .trace_hash
            .unwrap_or_default(),
    };
    let again = run_seed(seed, TraceMode::Hash)
        .trace_hash
        .unwrap_or_default();
    if first_hash != again && first.failure.is_none() {
        first.failure = Some(Failure::Determinism(format!(
            "trace hash {first_hash:016x}, then {again:016x}"
        )));
    }
}

fn main() -> ExitCode {
    let Some(Args {
        start,
        count,
        trace,
    }) = parse_args()
    else {
        eprintln!("usage: ebb-sim --seeds N [--seed S] [--trace]");
        return ExitCode::from(USAGE);
    };
    if count > 1 {
        println!("seeds {start}..{}", start + count);
    }
    let (mut passed, mut failed, mut code) = (0u64, 0u64, u8::MAX);
    let (mut requests, mut steps, mut virtual_time) = (0u64, 0u64, Duration::ZERO);
    // Coverage: how often each situation happened, and in how many seeds
    // it could have, summed over seeds.
    let mut cover = vec![(0u64, 0u64); COUNTERS.len()];
    let mut gaps = vec![0u64; GAPS.len()];
    let began = Instant::now();
    // A few seeds, or a trace: one at a time, each seed's knobs printed before
    // its run, each run twice for determinism. Many seeds: on every core at
    // once, the first one run twice.
    let verbose = count <= 10 || trace;
    let mut sweep = if verbose {
        Vec::new()
    } else {
        outcomes(start, count)
    }
    .into_iter();
    for seed in start..start + count {
        let out = match sweep.next() {
            Some(mut out) => {
                if seed == start {
                    check_determinism(seed, &mut out);
                }
                out
            }
            None => {
                if !trace {
                    // A trace begins with the knobs itself.
                    println!("{}", Knobs::from_seed(seed));
                }
                let mode = if trace {
                    TraceMode::Print
                } else {
                    TraceMode::Hash
                };
                let mut out = run_seed(seed, mode);
                check_determinism(seed, &mut out);
                out
            }
        };
        let s = &out.stats;
        requests += s.answered + s.rejected;
        virtual_time += out.virtual_time;
        steps += s.steps;
        if verbose {
            let report = out
                .report
                .as_ref()
                .map_or("no exit".to_owned(), |r| r.to_string());
            println!(
                "seed {seed}: {} requests handed, {} answered ({} by core's 500 for an application fault), \
                 {} rejected, {} connections, {} refused; {report}",
                s.handed, s.answered, s.faulted, s.rejected, s.net.connections, s.net.refused
            );
            if let Some(h) = out.trace_hash {
                println!("seed {seed}: trace hash {h:016x}");
            }
        }
        for (c, (count, seeds)) in COUNTERS.iter().zip(cover.iter_mut()) {
            if (c.enabled)(&out.knobs) {
                *seeds += 1;
                *count += (c.count)(&out);
            }
        }
        for (g, sum) in GAPS.iter().zip(gaps.iter_mut()) {
            *sum += (g.count)(&out);
        }
        match &out.failure {
            None => passed += 1,
            Some(why) => {
                failed += 1;
                code = code.min(why.exit_code());
                println!(
                    "FAIL seed {seed}: {why} | replay: cargo run -p ebb-sim --release -- --seed {seed}"
                );
            }
        }
    }
    let real = began.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{requests} simulated requests ({steps} steps) in {real:.2}s real ({:.0}/s), {:.1}s virtual ({:.1}x real time)",
        requests as f64 / real,
        virtual_time.as_secs_f64(),
        virtual_time.as_secs_f64() / real
    );
    let mut uncovered = Vec::new();
    for (c, &(count, seeds)) in COUNTERS.iter().zip(&cover) {
        println!(
            "cover {:<28} {count:>8} in {seeds} seeds that enable it",
            c.name
        );
        if count == 0 && seeds > 0 && count_checked(passed + failed) {
            uncovered.push(c.name);
        }
    }
    for (g, sum) in GAPS.iter().zip(&gaps) {
        println!("known gap {:<26} {sum:>8}", g.name);
    }
    if !uncovered.is_empty() {
        println!(
            "FAIL coverage: never happened although enabled: {}",
            uncovered.join(", ")
        );
        code = code.min(COVERAGE);
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 && uncovered.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(code)
    }
}

/// Whether a batch of `seeds` is large enough for its coverage to be
/// judged.
fn count_checked(seeds: u64) -> bool {
    seeds >= COVERAGE_MIN_SEEDS
}

/// Runs seeds `start..start + count` on every core and returns their outcomes
/// in seed order. Seeds are independent worlds, each as deterministic as when
/// run alone.
fn outcomes(start: u64, count: u64) -> Vec<Outcome> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicU64::new(start);
    let done = Mutex::new(Vec::with_capacity(count as usize));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + count {
                    break;
                }
                let out = run_seed(seed, TraceMode::Off);
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((seed, out));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(seed, _)| *seed);
    done.into_iter().map(|(_, out)| out).collect()
}
