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
# with one. Needs the nightly toolchain and cargo-fuzz. Each target starts from a
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

cargo +nightly fuzz build -s "$sanitizer"

failed=()
for target in "${targets[@]}"; do
    cp -r "corpus/$target" "$work/$target"
    echo "== fuzz $target for ${seconds}s (sanitizer: $sanitizer)"
    if ! cargo +nightly fuzz run -s "$sanitizer" "$target" "$work/$target" "regressions/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "== crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "== no crashes"
