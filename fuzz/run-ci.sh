#!/usr/bin/env bash
# Runs every fuzz target for a while; any crash fails.
#
#   fuzz/run-ci.sh [seconds-per-target]    (default 60)
#
# Needs the nightly toolchain and cargo-fuzz. Each target starts from a
# temporary copy of fuzz/corpus/<target> (so CI never grows the checked-in
# corpus) plus fuzz/regressions/<target>, read-only. A crash leaves its input
# in fuzz/artifacts/<target>/; minimise it with `cargo fuzz tmin` and check it
# in under fuzz/regressions/<target>/ once fixed.
set -euo pipefail

seconds="${1:-60}"
cd "$(dirname "$0")"
targets=(request_bytes server_ops chunked)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo +nightly fuzz build

failed=()
for target in "${targets[@]}"; do
    cp -r "corpus/$target" "$work/$target"
    echo "== fuzz $target for ${seconds}s"
    if ! cargo +nightly fuzz run "$target" "$work/$target" "regressions/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "== crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "== no crashes"
