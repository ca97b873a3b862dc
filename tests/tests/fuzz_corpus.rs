//! Replays the checked-in fuzz corpus and every minimised crash on stable:
//! each file in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes
//! through the same function the cargo-fuzz target calls (in
//! `ebb_testkit::fuzz`).

use std::fs;
use std::path::{Path, PathBuf};

/// The files of `fuzz/<dir>/<target>/`, sorted; the directory must exist and
/// hold at least one file.
fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(dir)
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", path.display());
    files
}

/// Runs `target` over its corpus and its regressions, naming the file that
/// fails.
fn replay(target: &str, run: fn(&[u8])) {
    for dir in ["corpus", "regressions"] {
        for file in inputs(dir, target) {
            let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails", file.display());
        }
    }
}

#[test]
fn request_bytes_corpus() {
    replay("request_bytes", ebb_testkit::fuzz::request_bytes);
}

/// A `request_bytes` crash was found with the splits, FIN and answers the
/// generator derived from its bytes; a change of generator gives it others.
/// Under many salts it meets many of each, the original kind among them.
#[test]
fn request_bytes_regressions_under_many_salts() {
    for file in inputs("regressions", "request_bytes") {
        let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for salt in 1..64 {
            let outcome =
                std::panic::catch_unwind(|| ebb_testkit::fuzz::request_bytes_salted(&data, salt));
            assert!(outcome.is_ok(), "{} fails with salt {salt}", file.display());
        }
    }
}

#[test]
fn server_ops_corpus() {
    replay("server_ops", ebb_testkit::fuzz::server_ops);
}

#[test]
fn chunked_corpus() {
    replay("chunked", ebb_testkit::fuzz::chunked);
}
