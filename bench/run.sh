#!/usr/bin/env bash
# Throughput figures: wrk straight to a demo origin, then through limpet
# (threads: 1) to the same origin. Loopback only; stops by itself.
#   bench/run.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
limpet=build/limpet
origin_port=19501
lb_port=19500
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT

cat > "$tmp/bench.json" <<JSON
{"listen": [{"address": "127.0.0.1:$lb_port", "load_balancer": "bench"}],
 "threads": 1, "log": {"access": "off"},
 "pools": [{"name": "p", "origins": [{"name": "o1", "address": "127.0.0.1:$origin_port"}]}],
 "load_balancers": [{"name": "bench", "default_pools": ["p"]}]}
JSON

"$limpet" --demo-origin "127.0.0.1:$origin_port" o1 2>/dev/null &
"$limpet" -c "$tmp/bench.json" 2>"$tmp/limpet.err" &
lb_pid=$!
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$lb_port/status" >/dev/null && break
  sleep 0.1
done

echo "== direct to the demo origin (wrk -t1 -c$conns -d${secs}s)"
wrk -t1 -c"$conns" -d"${secs}s" "http://127.0.0.1:$origin_port/"
echo
echo "== through limpet, threads: 1 (wrk -t1 -c$conns -d${secs}s)"
wrk -t1 -c"$conns" -d"${secs}s" "http://127.0.0.1:$lb_port/"
echo
echo "limpet RSS after the run: $(awk '/VmRSS/ {print $2, $3}' /proc/$lb_pid/status)"
