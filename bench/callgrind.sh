#!/usr/bin/env bash
# Instructions per request of the `ebb` binary's demo `GET /`, counted by
# callgrind: independent of the machine's load, unlike the µs of peers.sh.
#
#   bench/callgrind.sh              # CONNS=8 DEPTH=1: keep-alive
#   DEPTH=16 bench/callgrind.sh     # 16 pipelined requests per write
#   EBB=/tmp/ebb-old bench/callgrind.sh   # another build, to compare
#
# The server runs twice under callgrind with one worker and no access log,
# serving ROUNDS and 5×ROUNDS rounds from a small client: each round sends
# DEPTH requests on each of CONNS connections, then reads every response.
# The difference of the two totals over the difference of the requests is
# the cost of one request, start-up and shutdown cancelled. The two profiles
# stay in OUT (default target/callgrind) for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-8}
DEPTH=${DEPTH:-1}
ROUNDS=${ROUNDS:-$((1000 / DEPTH))}
OUT=${OUT:-target/callgrind}
# A free port by default: ebb listens with SO_REUSEPORT, so two runs on one
# port would share each other's clients and count each other's requests.
PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
EBB=${EBB:-}

die() { echo "callgrind.sh: $*" >&2; exit 1; }
command -v valgrind >/dev/null || die "valgrind is needed; on Debian: apt-get install -y valgrind"
command -v python3 >/dev/null || die "python3 is needed for the client"
if [[ -z $EBB ]]; then
    cargo build --release -q -p ebb-mio --bin ebb
    EBB=./target/release/ebb
fi
mkdir -p "$OUT"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Sends $1 rounds; prints the number of requests answered.
client() {
    python3 - "$PORT" "$CONNS" "$1" "$DEPTH" <<'PY'
import socket, sys
port, conns, rounds, depth = map(int, sys.argv[1:])
one = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
# The first response gives the length of all (the Date keeps its length).
socks[0].sendall(one)
got = b""
while b"\r\n\r\n" not in got:
    got += socks[0].recv(65536)
head, _, body = got.partition(b"\r\n\r\n")
length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
              if line.lower().startswith(b"content-length:"))
while len(body) < length:
    body += socks[0].recv(65536)
size = len(head) + 4 + length
for _ in range(rounds):
    for s in socks:
        s.sendall(one * depth)
    for s in socks:
        left = size * depth
        while left:
            n = len(s.recv(left))
            if n == 0:
                sys.exit("the server closed a connection")
            left -= n
print(1 + conns * rounds * depth)
PY
}

# Runs the server under callgrind for $1 rounds; prints requests and instructions.
profile() {
    local rounds=$1 out="$OUT/ebb.$1x$CONNS.d$DEPTH.out" pid requests
    listening && die "port $PORT is taken"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$EBB" \
        --bind "127.0.0.1:$PORT" --workers 1 --no-access-log 2>/dev/null &
    pid=$!
    for _ in $(seq 200); do
        listening && break
        sleep 0.1
    done
    requests=$(client "$rounds")
    kill -INT "$pid"
    wait "$pid" || true
    echo "$requests $(awk '/^summary:/ {print $2}' "$out")"
}

read -r small_requests small_ir < <(profile "$ROUNDS")
read -r large_requests large_ir < <(profile $((5 * ROUNDS)))
echo "$CONNS connections, $DEPTH request(s) per write: $(((large_ir - small_ir) / (large_requests - small_requests))) instructions per request"
echo "profiles: $OUT/ebb.*x$CONNS.d$DEPTH.out (callgrind_annotate them)"
