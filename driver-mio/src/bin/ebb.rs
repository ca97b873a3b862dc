//! `ebb`: the demo server. Everything lives in the library (`ebb_mio::cli`).

fn main() -> std::process::ExitCode {
    ebb_mio::cli::main()
}
