#!/usr/bin/env bash
# Mutation testing of core's lifecycle code against the simulator and
# core's own tests (see MUTANTS.md for the survivors and why each lives).
#
#   scripts/mutants.sh [extra cargo-mutants args]     e.g. --iterate, -j 2
#   MUTANT_FILES="parse parse/* byteset chunked" scripts/mutants.sh -j 2
#
# Each mutant of the files below (or of MUTANT_FILES, named as under
# core/src without `.rs`; globs pass through to cargo-mutants) is built in a fast profile (release, with
# debug assertions, no debug info) and judged by `cargo test -p ebb-core
# -p ebb-sim --lib --tests`: core's unit tests and the simulator's seeds
# test, which runs seeds 1..=1000 here (EBB_SIM_SEEDS). A mutant is caught
# when a test fails, and counts as caught when it times out (a hang).
# Results go to mutants.out/ (outcomes.json, caught.txt, missed.txt, ...);
# `--iterate` re-tests only what a previous run did not catch.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked

read -r -a files <<<"${MUTANT_FILES:-drain conn read write server transitions timers}"
args=()
for f in "${files[@]}"; do args+=(--file "core/src/$f.rs"); done

export EBB_SIM_SEEDS="${EBB_SIM_SEEDS:-1000}"
export CARGO_PROFILE_RELEASE_DEBUG=0
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_RELEASE_INCREMENTAL=true
# The release profile links with fat LTO in one codegen unit (for speed);
# a mutant's build wants the opposite.
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

exec cargo mutants "${args[@]}" \
    --test-package ebb-core,ebb-sim \
    --profile release --timeout "${MUTANT_TIMEOUT:-180}" --build-timeout 900 \
    --cargo-test-arg=--lib --cargo-test-arg=--tests \
    --output "${MUTANTS_OUT:-.}" "$@"
