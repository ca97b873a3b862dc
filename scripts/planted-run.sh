#!/usr/bin/env bash
# Plants each bug of scripts/planted/*.patch in core, one at a time, and
# reports how fast the simulator and the server_ops fuzzer catch it:
#
#   scripts/planted-run.sh [fuzz-seconds] [patch...]   (default 120, all)
#
# The simulator runs seeds 1..=SEEDS (default 200; 0 skips it), for at most
# SIM_LIMIT seconds (default 600: a bug that loops inside core never returns),
# and reports the first failing seed; the fuzzer runs server_ops without a sanitizer
# from a copy of CORPUS (default fuzz/corpus/server_ops) and reports the
# seconds to the first crash. Core is restored
# with `git checkout core/` after each patch: the bugs are never committed.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
shift || true
seeds="${SEEDS:-200}"
corpus="${CORPUS:-fuzz/corpus/server_ops}"
patches=("$@")
((${#patches[@]})) || patches=(scripts/planted/*.patch)
if ! git diff --quiet -- core/; then
    echo "core/ has local changes; refusing to plant over them" >&2
    exit 2
fi
trap 'git checkout -q -- core/; cargo build -q -p ebb-sim --release 2>/dev/null' EXIT
for p in "${patches[@]}"; do
    name="$(basename "$p" .patch)"
    git apply "$p" || { echo "$name: does not apply"; continue; }
    cargo build -q -p ebb-sim --release 2>/dev/null
    out="$(mktemp)"
    first=""
    hung=""
    if ((seeds > 0)); then
        # A bug that loops inside core never returns to the simulator:
        # the run is cut after SIM_LIMIT seconds (default 600).
        timeout "${SIM_LIMIT:-600}" ./target/release/ebb-sim --seeds "$seeds" --seed 1 >"$out"
        [[ $? == 124 ]] && hung="hung: no result within ${SIM_LIMIT:-600} s (a loop in core?)"
        first="$(grep -m1 '^FAIL seed' "$out" || true)"
    fi
    rm -f "$out"
    if ((seeds == 0)); then
        sim="skipped"
    elif [[ -n "$hung" && -z "$first" ]]; then
        sim="$hung"
    elif [[ -n "$first" ]]; then
        seed="$(sed -E 's/^FAIL seed ([0-9]+):.*/\1/' <<<"$first")"
        sim="first failure at seed $seed ($((seed)) of $seeds)"
    else
        sim="not caught in $seeds seeds"
    fi
    fuzz="skipped"
    if ((seconds > 0)); then
        work="$(mktemp -d)"
        cp -r "$corpus" "$work/corpus"
        (cd fuzz && cargo +nightly fuzz build -s none server_ops >/dev/null 2>&1)
        start=$(date +%s)
        if (cd fuzz && cargo +nightly fuzz run -s none server_ops "$work/corpus" \
            -- -max_total_time="$seconds" -artifact_prefix="$work/" >"$work/log" 2>&1); then
            fuzz="not caught in ${seconds}s"
        else
            fuzz="crash after $(( $(date +%s) - start ))s: $(grep -m1 -E "panicked at|assertion" -A1 "$work/log" | tr '\n' ' ' | cut -c1-160)"
        fi
        rm -rf "$work"
    fi
    echo "$name"
    echo "  sim:        $sim"
    echo "  server_ops: $fuzz"
    echo "  sim first failure: ${first:0:300}"
    git checkout -q -- core/
done
