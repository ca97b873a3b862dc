#!/usr/bin/env bash
# Streaming throughput over loopback, ebb against hyper, back to back:
#   download — one connection downloads a long body of unknown length
#   (chunked) from ebb's demo `/stream` and from hyper serving the same
#   pattern (bench/peers/hyper-hello `/stream`);
#   upload — one connection uploads a long body (with Content-Length) to
#   ebb's demo `/upload?hash=0`, read as it arrives through a BodyReader on
#   the demo's thread, and to hyper's `/upload?hash=0`, read frame by frame;
#   both only count the bytes.
#
#   bench/stream.sh                          # BYTES=4 GiB ROUNDS=3 CHUNK=64 KiB
#   BYTES=1073741824 ROUNDS=5 bench/stream.sh
#
# Each round starts each server afresh (the order alternates) on core 0 with
# one worker — ebb's process, its worker and the demo's producer or reader
# thread, all on core 0; hyper on a current-thread runtime — and runs curl on
# core 1 (`-o /dev/null` to download; `-T` a sparse file of BYTES to
# upload). It prints the rate in GB/s (10^9 bytes per second, from curl's
# total time) and the server's CPU (user+sys) per GB, then the medians and
# ebb's ratio to hyper, for each direction.
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${BYTES:-4294967296}
ROUNDS=${ROUNDS:-3}
CHUNK=${CHUNK:-65536}
export LC_NUMERIC=C

die() { echo "stream.sh: $*" >&2; exit 1; }
command -v curl >/dev/null || die "curl is needed"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin the processes"
(($(nproc) >= 2)) || die "pinning needs two cores (server on 0, curl on 1)"
CLK_TCK=$(getconf CLK_TCK)

servers=(ebb hyper)
declare -A port=([ebb]=18090 [hyper]=18091)
declare -A binary=(
    [ebb]=./target/release/ebb
    [hyper]=bench/peers/hyper-hello/target/release/hyper-hello
)

echo "building ebb and hyper-hello (release)" >&2
cargo build --release -q -p ebb-mio --bin ebb
(cd bench/peers/hyper-hello && cargo build --release -q)

results=$(mktemp -d)
pid=
trap 'if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$results"' EXIT

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
    local addr="127.0.0.1:${port[$1]}" args
    listening "${port[$1]}" && die "port ${port[$1]} is taken by another process"
    case $1 in
        ebb) args=(--bind "$addr" --workers 1 --drain-timeout 1) ;;
        *) args=("$addr" 1) ;;
    esac
    taskset -c 0 "${binary[$1]}" "${args[@]}" 2>>"$results/$1.log" &
    pid=$!
    for _ in $(seq 100); do
        listening "${port[$1]}" && return
        kill -0 "$pid" 2>/dev/null || { cat "$results/$1.log" >&2; die "$1 exited at start"; }
        sleep 0.05
    done
    die "$1 did not listen on $addr within 5 s"
}

stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
}

cpu_ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'; }

# measure SERVER DIRECTION: one transfer of BYTES, recorded under
# $results/SERVER.DIRECTION.{rate,cpu}.
measure() {
    local server=$1 direction=$2 before after out size secs rate cpu url answer
    url="http://127.0.0.1:${port[$server]}"
    start "$server"
    before=$(cpu_ticks)
    if [[ $direction == download ]]; then
        out=$(taskset -c 1 curl -s -o /dev/null -w '%{size_download} %{time_total}' \
            "$url/stream?bytes=$BYTES&chunk=$CHUNK")
    else
        out=$(taskset -c 1 curl -s -o "$results/answer" -w '%{size_upload} %{time_total}' \
            -X POST -H 'Expect:' -T "$results/upload" "$url/upload?hash=0")
        answer=$(cat "$results/answer")
        [[ $answer == "bytes=$BYTES" ]] || die "$server answered '$answer' to a $BYTES-byte upload"
    fi
    after=$(cpu_ticks)
    stop
    read -r size secs <<<"$out"
    ((size == BYTES)) || die "$server moved $size bytes, not $BYTES"
    rate=$(awk -v b="$size" -v s="$secs" 'BEGIN {printf "%.3f", b / s / 1e9}')
    cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v b="$size" 'BEGIN {printf "%.3f", t / hz / (b / 1e9)}')
    echo "$rate" >>"$results/$server.$direction.rate"
    echo "$cpu" >>"$results/$server.$direction.cpu"
    printf '  %-8s %-6s %8s GB/s in %6.2f s, server CPU %s s/GB\n' "$direction" "$server" "$rate" "$secs" "$cpu"
}

median() { sort -g "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# The upload's source: a sparse file, read as zeros without touching a disk,
# read once first — the first reader pays for filling the page cache, which
# would slow whichever server is measured first.
truncate -s "$BYTES" "$results/upload"
cat "$results/upload" >/dev/null

echo "$ROUNDS rounds of one $BYTES-byte download (in $CHUNK-byte writes) and one $BYTES-byte upload; server on core 0, curl on core 1"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    for direction in download upload; do
        for i in 0 1; do
            measure "${servers[(i + round - 1) % 2]}" "$direction"
        done
    done
done
declare -A med
for direction in download upload; do
    echo
    echo "$direction: medians of $ROUNDS rounds"
    printf '%-10s %12s %16s\n' server "GB/s" "CPU s/GB"
    for server in "${servers[@]}"; do
        med[$server.rate]=$(median "$results/$server.$direction.rate")
        med[$server.cpu]=$(median "$results/$server.$direction.cpu")
        printf '%-10s %12s %16s\n' "$server" "${med[$server.rate]}" "${med[$server.cpu]}"
    done
    printf '%-10s %12.2f %16.2f\n' ebb/hyper \
        "$(awk -v e="${med[ebb.rate]}" -v p="${med[hyper.rate]}" 'BEGIN {print e / p}')" \
        "$(awk -v e="${med[ebb.cpu]}" -v p="${med[hyper.cpu]}" 'BEGIN {print e / p}')"
done
echo
echo "ratios: above 1 favours ebb for GB/s; below 1 favours ebb for CPU per GB"
