#!/usr/bin/env bash
# ebb's demo server against two peers built from crates.io — hyper
# (bench/peers/hyper-hello) and actix-web (bench/peers/actix-hello) — and
# a floor (bench/peers/floor-hello: a mio loop that parses nothing and
# answers every empty line with a canned response), measured back to back on
# this machine. Every server answers GET / with the 13-byte text/plain
# `Hello, World!`. The floor shows what this machine's kernel, wrk and an
# event loop cost on their own today: this VM's speed drifts from hour to
# hour, and a figure in µs means little without it.
#
#   bench/peers.sh                          # DURATION=5s ROUNDS=3 CONNS=64
#   DURATION=10s ROUNDS=5 bench/peers.sh
#   WORKERS=2 bench/peers.sh                # a sanity check, not a benchmark
#
# Each round starts every server afresh, one after another (the order rotates
# from round to round), on core 0 with one worker thread, and drives it with
# wrk -t1 -cCONNS -dDURATION on core 1:
#   keep-alive  GET / → req/s; the server's user and user+sys CPU per
#               request in µs (utime and stime from /proc/PID/stat before and
#               after, over the requests wrk counted); its peak RSS (VmHWM
#               from /proc/PID/status, read after this run, which comes first)
#   close       the same with `Connection: close`: one connection per request;
#               req/s, and the server's user+sys CPU per request in µs
#               (wrk's single thread is the bottleneck here, so the CPU
#               tells the servers apart)
#   pipelined   16 requests per write (bench/pipeline.lua)
# It prints each round as it goes, then the medians over the rounds and
# ebb's ratio to each peer and to the floor.
#
# WORKERS=N with N > 1 checks only that each server runs and scales with N
# workers: nothing is pinned, wrk shares the cores with the server, and only
# keep-alive req/s is printed, with each busy thread's share of the server's
# CPU (so a worker that starves shows). Its figures say little about the
# servers; the floor, one loop by design, sits it out. ebb runs without its
# access log, as the peers keep none.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1}
export LC_NUMERIC=C

die() { echo "peers.sh: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is needed; on Debian: apt-get install -y wrk"
if ((WORKERS == 1)); then
    command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin the processes"
    (($(nproc) >= 2)) || die "pinning needs two cores (server on 0, wrk on 1); this machine has $(nproc)"
    server_pin=(taskset -c 0)
    wrk_pin=(taskset -c 1)
else
    server_pin=()
    wrk_pin=()
fi
CLK_TCK=$(getconf CLK_TCK)

servers=(ebb hyper actix floor)
((WORKERS == 1)) || servers=(ebb hyper actix)
declare -A port=([ebb]=18080 [hyper]=18081 [actix]=18082 [floor]=18083)
declare -A binary=(
    [ebb]=./target/release/ebb
    [hyper]=bench/peers/hyper-hello/target/release/hyper-hello
    [actix]=bench/peers/actix-hello/target/release/actix-hello
    [floor]=bench/peers/floor-hello/target/release/floor-hello
)

echo "building ebb, hyper-hello, actix-hello and floor-hello (release)" >&2
cargo build --release -q -p ebb-mio --bin ebb
for peer in hyper-hello actix-hello floor-hello; do
    (cd "bench/peers/$peer" && cargo build --release -q)
done

results=$(mktemp -d)
pid=
trap 'if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$results"' EXIT

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts a fresh $1 and waits until it accepts connections; sets pid.
start() {
    local addr="127.0.0.1:${port[$1]}" args
    listening "${port[$1]}" && die "port ${port[$1]} is taken by another process"
    case $1 in
        # No access log: the peers keep none either.
        ebb) args=(--bind "$addr" --workers "$WORKERS" --drain-timeout 1 --no-access-log) ;;
        *) args=("$addr" "$WORKERS") ;;
    esac
    "${server_pin[@]}" "${binary[$1]}" "${args[@]}" 2>>"$results/$1.log" &
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

# Runs wrk against server $1 with the extra arguments after it; sets
# requests and rate, and warns on errors wrk reports.
load() {
    local server=$1 out
    shift
    out=$("${wrk_pin[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" "$@" "http://127.0.0.1:${port[$server]}/")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    if grep -qE 'Socket errors|Non-2xx' <<<"$out"; then
        echo "  warning, $server $*: $(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | tr '\n' ' ')" >&2
    fi
}

# utime and stime of $pid in clock ticks, all threads included.
cpu_ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12, $13}'; }

# The user and user+sys CPU µs per request of $pid since the ticks $1, over
# the requests wrk counted last.
cpu_per_request() {
    awk -v b="$1" -v a="$(cpu_ticks)" -v n="$requests" -v hz="$CLK_TCK" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        us = 1e6 / hz / n
        printf "%.2f %.2f\n", (y[1] - x[1]) * us, (y[1] + y[2] - x[1] - x[2]) * us }'
}

# Each thread of $pid that used at least 2% of the process's CPU so far, as
# name=percent, busiest first: with several workers, a worker that starves
# (or takes every connection) shows here.
thread_shares() {
    local task
    for task in /proc/"$pid"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$task/comm")" "$(sed 's/.*) //' "$task/stat" | awk '{print $12 + $13}')"
    done | awk '{name[NR] = $1; t[NR] = $2; sum += $2}
        END {for (i = 1; i <= NR; i++) if (sum && t[i] * 50 >= sum) printf "%d %s=%d%%\n", t[i], name[i], 100 * t[i] / sum}' |
        sort -rn | cut -d' ' -f2 | tr '\n' ' '
}

record() { echo "$3" >>"$results/$1.$2"; }

# One round for server $1: a fresh process, the loads in order.
measure() {
    local server=$1 before user total
    start "$server"
    before=$(cpu_ticks)
    load "$server"
    local ka=$rate
    read -r user total < <(cpu_per_request "$before")
    local rss
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    record "$server" keepalive "$ka"
    if ((WORKERS > 1)); then
        local shares
        shares=$(thread_shares)
        stop
        printf '  %-6s keep-alive %10s req/s; CPU by thread: %s\n' "$server" "$ka" "$shares"
        return
    fi
    record "$server" user "$user"
    record "$server" total "$total"
    record "$server" rss "$rss"
    before=$(cpu_ticks)
    load "$server" -H "Connection: close"
    local close=$rate close_total
    read -r _ close_total < <(cpu_per_request "$before")
    record "$server" close "$close"
    record "$server" close_total "$close_total"
    load "$server" -s bench/pipeline.lua
    record "$server" pipelined "$rate"
    stop
    printf '  %-6s keep-alive %10s req/s, %s/%s µs user/total per request, peak RSS %s KiB; close %s req/s, %s µs per request; pipelined %s req/s\n' \
        "$server" "$ka" "$user" "$total" "$rss" "$close" "$close_total" "$rate"
}

# A right-aligned table cell, 19 characters wide however many bytes they take.
cell() {
    local chars bytes
    chars=$(LC_ALL=C.UTF-8 && echo "${#1}")
    bytes=$(LC_ALL=C && echo "${#1}")
    printf ' %*s' $((19 + bytes - chars)) "$1"
}

median() { sort -g "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

if ((WORKERS == 1)); then
    echo "$ROUNDS rounds; each server on core 0 with 1 worker; wrk -t1 -c$CONNS -d$DURATION on core 1"
    figures=(keepalive user total close close_total pipelined rss)
    header=("keep-alive req/s" "user µs/req" "total µs/req" "close req/s" "close µs/req" "pipelined×16 req/s" "peak RSS KiB")
else
    echo "$ROUNDS rounds; SANITY CHECK ONLY: $WORKERS workers each, nothing pinned; wrk -t1 -c$CONNS -d$DURATION"
    figures=(keepalive)
    header=("keep-alive req/s")
fi
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    # Rotate the order so no server always runs first or follows the same one.
    for i in "${!servers[@]}"; do
        measure "${servers[(i + round - 1) % ${#servers[@]}]}"
    done
done

echo
echo "medians of $ROUNDS rounds"
printf '%-10s' server
for h in "${header[@]}"; do cell "$h"; done
echo
declare -A med
for server in "${servers[@]}"; do
    printf '%-10s' "$server"
    for f in "${figures[@]}"; do
        med[$server.$f]=$(median "$results/$server.$f")
        printf ' %19s' "${med[$server.$f]}"
    done
    echo
done
for peer in "${servers[@]:1}"; do
    printf '%-10s' "ebb/$peer"
    for f in "${figures[@]}"; do
        printf ' %19.2f' "$(awk -v e="${med[ebb.$f]}" -v p="${med[$peer.$f]}" 'BEGIN {print e / p}')"
    done
    echo
done
echo "ratios: above 1 favours ebb for req/s; below 1 favours ebb for µs/req and RSS"
