#!/usr/bin/env bash
# Throughput of ebb's demo server against hyper (bench/peers/hyper-hello),
# measured in the same run on the same machine: GET / over keep-alive with
# wrk, alternating servers for ROUNDS rounds, then the medians and their
# ratio. Both servers get WORKERS threads; wrk gets the rest of the machine.
#
#   bench/wrk.sh                         # defaults below
#   WORKERS=1 CONNS=64 DURATION=10s ROUNDS=5 bench/wrk.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${WORKERS:-1}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-5}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p ebb-mio --bin ebb
(cd bench/peers/hyper-hello && cargo build --release -q)

./target/release/ebb --bind 127.0.0.1:18080 --workers "$WORKERS" 2>/dev/null &
ebb_pid=$!
bench/peers/hyper-hello/target/release/hyper-hello 127.0.0.1:18081 "$WORKERS" &
hyper_pid=$!
trap 'kill $ebb_pid $hyper_pid 2>/dev/null || true' EXIT
sleep 1

rate() { wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

ebb_rates=(); hyper_rates=()
for round in $(seq "$ROUNDS"); do
    e=$(rate 18080); h=$(rate 18081)
    echo "round $round: ebb $e req/s, hyper $h req/s"
    ebb_rates+=("$e"); hyper_rates+=("$h")
done
e=$(printf '%s\n' "${ebb_rates[@]}" | median)
h=$(printf '%s\n' "${hyper_rates[@]}" | median)
echo "median: ebb $e req/s, hyper $h req/s, ratio ebb/hyper $(awk -v e="$e" -v h="$h" 'BEGIN {printf "%.2f", e / h}')"
