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
//!
//! When seeds fail in different ways, the smallest of their codes.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ebb_core::Forced;
use ebb_sim::knobs::Knobs;
use ebb_sim::{run_seed, Failure, Outcome, TraceMode};

const USAGE: u8 = 2;

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
    // Coverage: how often the drain met each situation, summed over seeds.
    let mut cover = [0u64; 9];
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
        if let Some(r) = &out.report {
            let forced = |f| u64::from(r.forced == Some(f));
            for (c, v) in cover.iter_mut().zip([
                forced(Forced::Deadline),
                forced(Forced::SecondTerminate),
                r.backlog_accepted,
                r.silent_closed,
                r.idle_closed,
                r.requests_completed,
                r.requests_cut,
                r.reset_risk_closes,
                s.faulted,
            ]) {
                *c += v;
            }
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
    println!(
        "drains forced by deadline {} / by second terminate {}; backlog accepted {}, silent closed {}, \
         idle closed {}, completed in drain {}, cut {}, reset-risk closes {}; app faults answered by 500 {}",
        cover[0], cover[1], cover[2], cover[3], cover[4], cover[5], cover[6], cover[7], cover[8]
    );
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(code)
    }
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
