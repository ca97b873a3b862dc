//! `ebb`: the demo server.
//!
//! Its modules live beside the library's files in `src/` but are compiled
//! into this binary only (hence `#[path]`): the command line, the demo app and
//! the logger are the binary's business, not API an embedder should build on.

#[path = "../cli.rs"]
mod cli;
#[path = "../demo.rs"]
mod demo;
#[path = "../logger.rs"]
mod logger;

fn main() -> std::process::ExitCode {
    cli::main()
}
