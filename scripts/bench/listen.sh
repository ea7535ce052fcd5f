#!/usr/bin/env bash
# scripts/bench/listen.sh [ROUNDS]: msrt's NATS listener against Debian's
# nats-server (docs/performance.md), both started here on loopback ports
# of their own, driven by the same client library (libnats, through
# build/bench_nats_raw), 16-byte payloads:
#   1 publisher -> 1 subscriber, fan-out to 4 (deliveries/s), a queue group
#   of 4, sequential request/reply p50/p99 (µs).
# The two servers take turns, scenario by scenario, ROUNDS times (default
# 5); each cell is the median with the range. Needs build/ (scripts/build)
# and nats-server.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
count=${BENCH_COUNT:-200000}
reqs=${BENCH_REQS:-5000}
size=16
nport=14222
mport=14223
wait_port() {
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "scripts/bench/listen.sh: nothing listens on $1" >&2; return 1
}
nats-server -a 127.0.0.1 -p "$nport" >/dev/null 2>&1 &
ns=$!
build/msrt-lua --log-level error --listen "nats=127.0.0.1:$mport" \
  -e 'require("msrt").run()' >/dev/null 2>&1 &
ms=$!
trap 'kill $ns $ms 2>/dev/null; wait $ns $ms 2>/dev/null || true' EXIT
wait_port "$nport"; wait_port "$mport"

# one figure: msgs/s, or "p50 p99"
figure() { # URL MODE
  case $2 in
    pubsub) build/bench_nats_raw "$1" pubsub "$count" "$size" | awk '{print $2}' ;;
    fanout) build/bench_nats_raw "$1" fanout "$count" "$size" 4 | awk '{print $2}' ;;
    queue) build/bench_nats_raw "$1" queue "$count" "$size" 4 | awk '{print $2}' ;;
    reqrep) build/bench_nats_raw "$1" reqrep "$reqs" "$size" | awk '{print $2, $4}' ;;
  esac
}
# median (range) of column $1 of the lines on stdin
med() { sort -n -k"$1","$1" | awk -v c="$1" '{v[NR]=$c} END {printf "%d (%d-%d)", v[int((NR+1)/2)], v[1], v[NR]}'; }

echo "command: scripts/bench/listen.sh $rounds (BENCH_COUNT=$count, BENCH_REQS=$reqs, payload $size B)"
echo "machine: $(nproc) CPUs, $(uname -sr), nats-server $(nats-server --version 2>&1 | awk '{print $NF}')"
declare -A res
for mode in pubsub fanout queue reqrep; do
  for r in $(seq "$rounds"); do
    res[$mode,nats]+="$(figure "nats://127.0.0.1:$nport" "$mode")"$'\n'
    res[$mode,msrt]+="$(figure "nats://127.0.0.1:$mport" "$mode")"$'\n'
  done
done
printf '%-28s %-26s %-26s\n' "scenario" "nats-server 2.9" "msrt listener"
for mode in pubsub fanout queue; do
  case $mode in pubsub) label="1 -> 1 (msgs/s)";; fanout) label="fan-out to 4 (deliveries/s)";; queue) label="queue group of 4 (msgs/s)";; esac
  printf '%-28s %-26s %-26s\n' "$label" "$(printf '%s' "${res[$mode,nats]}" | grep . | med 1)" \
    "$(printf '%s' "${res[$mode,msrt]}" | grep . | med 1)"
done
printf '%-28s %-26s %-26s\n' "request/reply p50 (µs)" "$(printf '%s' "${res[reqrep,nats]}" | grep . | med 1)" \
  "$(printf '%s' "${res[reqrep,msrt]}" | grep . | med 1)"
printf '%-28s %-26s %-26s\n' "request/reply p99 (µs)" "$(printf '%s' "${res[reqrep,nats]}" | grep . | med 2)" \
  "$(printf '%s' "${res[reqrep,msrt]}" | grep . | med 2)"
