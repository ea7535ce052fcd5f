#!/usr/bin/env bash
# What one message across the NATS bridge costs each side
# (docs/performance.md, the NATS bridge), against raw libnats on the same server
# and payloads (128-byte strings), one process per side:
#   scripts/bench/nats_cost.sh instr [SMALL LARGE]
#     instructions per message (valgrind's callgrind, every thread of the
#     process, differenced between SMALL and LARGE messages, default 2,000
#     and 12,000): the importing msrt host to an actor and to a hub
#     callback, and raw libnats' subscriber, each fed by raw libnats'
#     publisher; the exporting msrt host (msrt.publish from the hub) and
#     raw libnats' publisher, each read by raw libnats' subscriber; and
#     per request (a tenth of the counts, sequential: a message per read)
#     the answering msrt host (a hub callback, send_asap) and raw
#     libnats' responder, each asked by raw libnats' requester.
#     ONLY="msrt-actor msrt-hub raw-sub msrt-pub raw-pub msrt-rep raw-rep"
#     (the default) names the rows to take.
#   scripts/bench/nats_cost.sh switches [COUNT]
#     per thread of the receiving process, from subscribed to the last of
#     COUNT messages (default 50,000; perf stat): CPU ms, and per 1,000
#     messages context switches, socket reads, epoll waits, futex calls,
#     writes and the wake-ups the thread made, for the msrt host's actor
#     and hub callback and raw's subscriber (ONLY="msrt-actor msrt-hub
#     raw", the default, names them).
# MSRT_BUILD=DIR runs DIR's msrt-lua (default build; bench_nats_raw is
# build's).
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-instr}
dir=$(mktemp -d)
nats-server -a 127.0.0.1 -p -1 -l "$dir/nats.log" -P "$dir/nats.pid" \
  </dev/null >/dev/null 2>&1 &
trap 'kill "$(cat "$dir/nats.pid" 2>/dev/null)" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  url=$(sed -n 's/.*Listening for client connections on \(.*\)/nats:\/\/\1/p' \
    "$dir/nats.log" 2>/dev/null || true)
  if [ -n "$url" ]; then break; fi
  sleep 0.05
done
build=${MSRT_BUILD:-build} # the build whose msrt-lua runs
raw=build/bench_nats_raw
msrt=$build/msrt-lua

# The msrt receiver: MODE actor|hub, N messages; "ready" once subscribed,
# "done" after the last, then it holds HOLD ms and exits.
cat >"$dir/recv.lua" <<'EOF'
io.stdout:setvbuf("line")
local msrt = require "msrt"
msrt.start { log_level = "error" }
local url, mode, n, hold = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local br = assert(msrt.nats { url = url })
while br:info().state ~= "connected" do msrt.sleep(2) end
-- neither a bridge nor a hub subscription keeps a host running: this
-- timer does until the last message (or for 120 s)
msrt.after(120000, function() msrt.stop() end)
local function done()
  print("done")
  if hold == 0 then return msrt.stop() end
  msrt.after(hold, function() msrt.stop() end)
end
if mode == "hub" then
  local got = 0
  msrt.subscribe("bench.x", function() got = got + 1 if got == n then done() end end)
else
  msrt.subscribe("bench.done", done)
  assert(msrt.actor { name = "counter", subscribe = "bench.x", args = { n = n },
    init = function(ctx) ctx.got = 0 end,
    handle = function(ctx)
      ctx.got = ctx.got + 1
      if ctx.got == ctx.args.n then ctx:publish("bench.done", true) end
    end })
end
br:flush()
print("ready")
EOF
# The msrt publisher: N messages from the hub, then a flush.
cat >"$dir/send.lua" <<'EOF'
local msrt = require "msrt"
msrt.start { log_level = "error" }
local br = assert(msrt.nats { url = arg[1], export = { "bench.>" } })
while br:info().state ~= "connected" do msrt.sleep(2) end
local payload = string.rep("x", 128)
for _ = 1, tonumber(arg[2]) do msrt.publish("bench.x", payload) end
br:flush(30000)
br:close()
msrt.stop()
EOF

# The msrt responder: a hub callback answering bench.rr (send_asap, as
# nats.lua's), N requests, then it stops.
cat >"$dir/rep.lua" <<'EOF'
io.stdout:setvbuf("line")
local msrt = require "msrt"
msrt.start { log_level = "error" }
local br = assert(msrt.nats { url = arg[1], export = { "_INBOX.>" }, send_asap = true })
while br:info().state ~= "connected" do msrt.sleep(2) end
local n, got = tonumber(arg[2]), 0
msrt.after(120000, function() msrt.stop() end)
msrt.subscribe("bench.rr", function(m)
  msrt.publish(m.reply, m.data)
  got = got + 1
  if got == n then msrt.after(50, function() msrt.stop() end) end
end)
br:flush()
print("ready")
EOF

await() { # file pattern: wait (bounded, 120 s) for pattern in file
  for _ in $(seq 2400); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "nats_cost: no '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

grind() { # out-file command...: run under callgrind
  local out=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$out" --log-file="$out.log" "$@"
}

total() { sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$1"; }

# One receiving run of n messages: recv_kind (msrt-actor, msrt-hub, raw)
# under callgrind, fed by raw's publisher. Prints its total.
recv_instr() {
  local kind=$1 n=$2 log="$dir/r.$1.$2" cg="$dir/cg.r.$1.$2"
  case $kind in
    raw) grind "$cg" "$raw" "$url" sub "$n" 128 >"$log" & ;;
    msrt-*) grind "$cg" "$msrt" "$dir/recv.lua" "$url" "${kind#msrt-}" "$n" 0 \
        >"$log" & ;;
  esac
  local pid=$!
  await "$log" ready
  "$raw" "$url" pub "$n" 128
  wait $pid
  total "$cg"
}

# One sending run: send_kind (msrt, raw) under callgrind, read by raw's
# subscriber. Prints its total.
send_instr() {
  local kind=$1 n=$2 log="$dir/s.$1.$2" cg="$dir/cg.s.$1.$2"
  "$raw" "$url" sub "$n" 128 >"$log" &
  local pid=$!
  await "$log" ready
  case $kind in
    raw) grind "$cg" "$raw" "$url" pub "$n" 128 ;;
    msrt) grind "$cg" "$msrt" "$dir/send.lua" "$url" "$n" ;;
  esac
  wait $pid
  total "$cg"
}

# One responding run of n requests: msrt's hub callback or raw's
# responder under callgrind, asked by raw's requester. Prints its total.
rep_instr() {
  local kind=$1 n=$2 log="$dir/q.$1.$2" cg="$dir/cg.q.$1.$2"
  case $kind in
    raw) grind "$cg" "$raw" "$url" rep "$n" 128 >"$log" & ;;
    msrt) grind "$cg" "$msrt" "$dir/rep.lua" "$url" "$n" >"$log" & ;;
  esac
  local pid=$!
  await "$log" ready
  "$raw" "$url" req "$n" 128
  wait $pid
  total "$cg"
}

per_msg() { # label fn kind small large
  local a b
  a=$($2 "$3" "$4") b=$($2 "$3" "$5")
  printf '%-44s %8.0f instructions/message\n' "$1" "$(((b - a) / ($5 - $4)))"
}

# A receiving run of n messages (no valgrind): per thread, from ready
# to done (perf stat's software counters and tracepoints): CPU, context
# switches, reads (recvfrom: libnats' and raw's socket reads), epoll
# waits, futex calls (a sleep or a wake), writes (eventfd wake-ups) and
# the wake-ups the thread made (sched_wakeup counts in the waker).
events=task-clock,context-switches,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_write,sched:sched_wakeup
switches() {
  local kind=$1 n=$2 log="$dir/w.$1"
  case $kind in
    raw) "$raw" "$url" sub "$n" 128 >"$log" & ;;
    msrt-*) "$msrt" "$dir/recv.lua" "$url" "${kind#msrt-}" "$n" 500 >"$log" & ;;
  esac
  local pid=$!
  await "$log" ready
  perf stat --per-thread -x, -o "$dir/perf" -p "$pid" -e "$events" 2>"$dir/perf.err" &
  local perf=$!
  sleep 0.2 # perf attached
  "$raw" "$url" pub "$n" 128
  await "$log" "done\|msgs_per_s"
  kill -INT $perf 2>/dev/null || cat "$dir/perf.err" >&2
  wait $perf || true
  wait $pid
  echo "$kind, $n messages: per thread, CPU ms, then each count per 1,000 messages"
  awk -F, -v n="$n" '$1 !~ /^#/ && $2 ~ /^[0-9.]+$/ && $2 > 0 {
      ev = $4; sub(/^syscalls:sys_enter_|^sched:sched_/, "", ev)
      if (ev == "task-clock") v = sprintf("%.0f ms", $2)
      else v = sprintf("%.1f", $2 * 1000 / n)
      row[$1] = row[$1] sprintf(" %s %s", ev, v) }
    END { for (t in row) printf "  %-20s%s\n", t, row[t] }' "$dir/perf" | sort
}

case $what in
  instr)
    small=${2:-2000} large=${3:-12000}
    only=${ONLY:-msrt-actor msrt-hub raw-sub msrt-pub raw-pub msrt-rep raw-rep}
    for k in $only; do
      case $k in
        msrt-actor) per_msg "importing msrt host, to an actor" recv_instr msrt-actor "$small" "$large" ;;
        msrt-hub) per_msg "importing msrt host, to a hub callback" recv_instr msrt-hub "$small" "$large" ;;
        raw-sub) per_msg "raw libnats subscriber" recv_instr raw "$small" "$large" ;;
        msrt-pub) per_msg "exporting msrt host (msrt.publish, hub)" send_instr msrt "$small" "$large" ;;
        raw-pub) per_msg "raw libnats publisher" send_instr raw "$small" "$large" ;;
        msrt-rep) per_msg "answering msrt host, per request" rep_instr msrt "$((small / 10))" "$((large / 10))" ;;
        raw-rep) per_msg "raw libnats responder, per request" rep_instr raw "$((small / 10))" "$((large / 10))" ;;
      esac
    done
    ;;
  switches)
    n=${2:-50000}
    for k in ${ONLY:-msrt-actor msrt-hub raw}; do switches "$k" "$n"; done
    ;;
  *) echo "usage: scripts/bench/nats_cost.sh instr [SMALL LARGE] | switches [COUNT]" >&2; exit 2 ;;
esac
