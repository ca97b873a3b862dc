//! `ebb-sim`: run seeds, print failures with their replay command.
//!
//! ```text
//! cargo run -p ebb-sim --release -- --seeds N [--seed S] [--trace]
//! ```
//! `--seed S` alone runs seed S; with `--seeds N`, seeds S..S+N. `--seeds N`
//! alone starts from a clock-derived seed (printed). See the crate docs.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ebb_sim::world::{run, Outcome};

fn usage() -> ExitCode {
    eprintln!("usage: ebb-sim --seeds N [--seed S] [--trace]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut seeds, mut start, mut trace) = (None::<u64>, None::<u64>, false);
    while let Some(a) = args.next() {
        let value =
            |args: &mut dyn Iterator<Item = String>| args.next().and_then(|v| v.parse().ok());
        match a.as_str() {
            "--seeds" => match value(&mut args) {
                Some(n) => seeds = Some(n),
                None => return usage(),
            },
            "--seed" => match value(&mut args) {
                Some(s) => start = Some(s),
                None => return usage(),
            },
            "--trace" => trace = true,
            _ => return usage(),
        }
    }
    let count = match (seeds, start) {
        (Some(n), _) => n,
        (None, Some(_)) => 1,
        (None, None) => return usage(),
    };
    let start = start.unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64 % 1_000_000_000_000
    });
    if count > 1 {
        println!("seeds {start}..{}", start + count);
    }
    let (mut passed, mut failed) = (0u64, 0u64);
    let (mut requests, mut steps, mut virtual_time) = (0u64, 0u64, Duration::ZERO);
    // Coverage: how often the drain met each situation, summed over seeds.
    let mut cover = [0u64; 8];
    let began = Instant::now();
    // A few seeds, or a trace: one at a time, each seed's knobs printed before
    // its run. Many seeds: on every core at once.
    let verbose = count <= 10 || trace;
    let parallel = if verbose {
        None
    } else {
        Some(outcomes(start, count))
    };
    let mut parallel = parallel.into_iter().flatten();
    for seed in start..start + count {
        let out = match parallel.next() {
            Some(out) => out,
            None => {
                println!("{}", ebb_sim::knobs::Knobs::from_seed(seed));
                run(seed, trace, trace)
            }
        };
        requests += out.stats.answered + out.stats.rejected;
        virtual_time += out.virtual_time;
        steps += out.stats.steps;
        if verbose {
            let report = out
                .report
                .as_ref()
                .map_or("no exit".to_owned(), |r| r.to_string());
            println!(
                "seed {seed}: {} requests handed, {} answered, {} rejected, {} connections, {} refused; {report}",
                out.stats.handed, out.stats.answered, out.stats.rejected, out.stats.connections, out.stats.refused
            );
            if let Some(h) = out.trace_hash {
                println!("seed {seed}: trace hash {h:016x}");
            }
        }
        if let Some(r) = &out.report {
            let forced = |f| u64::from(r.forced == Some(f));
            for (c, v) in cover.iter_mut().zip([
                forced(ebb_core::Forced::Deadline),
                forced(ebb_core::Forced::SecondTerminate),
                r.backlog_accepted,
                r.silent_closed,
                r.idle_closed,
                r.requests_completed,
                r.requests_cut,
                r.reset_risk_closes,
            ]) {
                *c += v;
            }
        }
        match out.failure {
            None => passed += 1,
            Some(why) => {
                failed += 1;
                println!("FAIL seed {seed}: {why} | replay: cargo run -p ebb-sim --release -- --seed {seed}");
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
         idle closed {}, completed in drain {}, cut {}, reset-risk closes {}",
        cover[0], cover[1], cover[2], cover[3], cover[4], cover[5], cover[6], cover[7]
    );
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
                let out = run(seed, false, false);
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
