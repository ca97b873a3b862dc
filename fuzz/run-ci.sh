#!/usr/bin/env bash
# Runs every fuzz target for a while; any crash fails.
#
#   fuzz/run-ci.sh [seconds-per-target]    (default 60)
#   SANITIZER=address fuzz/run-ci.sh 60     (with AddressSanitizer)
#
# Core and the test kit have no `unsafe`, so the campaigns run without a
# sanitizer by default (`-s none`): AddressSanitizer costs some four times
# the executions per second and can find nothing safe Rust does not already
# catch. Set SANITIZER=address (or another `cargo fuzz -s` value) to run
# with one. `request_bytes` is built without comparison tracing
# (`--no-trace-compares`): measured, it reaches the same edge coverage in a
# minute with twice the executions per second (fuzz/README.md); set
# TRACE_COMPARES=1 to trace comparisons there too. Needs the nightly
# toolchain and cargo-fuzz. Each target starts from a
# temporary copy of fuzz/corpus/<target> (so CI never grows the checked-in
# corpus) plus fuzz/regressions/<target>, read-only. A crash leaves its input
# in fuzz/artifacts/<target>/; minimise it with `cargo fuzz tmin` and check it
# in under fuzz/regressions/<target>/ once fixed.
set -euo pipefail

seconds="${1:-60}"
sanitizer="${SANITIZER:-none}"
cd "$(dirname "$0")"
targets=(request_bytes server_ops chunked)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The build flags of each target.
flags() {
    if [[ "$1" == request_bytes && -z "${TRACE_COMPARES:-}" ]]; then
        echo "-s $sanitizer --no-trace-compares"
    else
        echo "-s $sanitizer"
    fi
}

failed=()
for target in "${targets[@]}"; do
    cp -r "corpus/$target" "$work/$target"
    echo "== fuzz $target for ${seconds}s ($(flags "$target"))"
    # shellcheck disable=SC2046 # the flags are words
    if ! cargo +nightly fuzz run $(flags "$target") "$target" "$work/$target" "regressions/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "== crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "== no crashes"
