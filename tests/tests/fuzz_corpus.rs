//! Replays the checked-in fuzz corpus and every minimised crash on stable:
//! each file in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes
//! through the same function the cargo-fuzz target calls.

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
    replay("request_bytes", ebb_core::fuzzing::request_bytes);
}

#[test]
fn server_ops_corpus() {
    replay("server_ops", ebb_core::fuzzing::server_ops);
}

#[test]
fn chunked_corpus() {
    replay("chunked", ebb_core::fuzzing::chunked);
}
