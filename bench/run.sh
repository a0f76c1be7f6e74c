#!/usr/bin/env bash
# `make bench`: limpet against HAProxy, nginx and a floor relay on loopback
# (bench/README.md). Writes bench/RESULTS.md and bench/ratios.svg.
#   BENCH_SECONDS=5 BENCH_ROUNDS=5 bench/run.sh      the default (~12 min)
#   BENCH_QUICK=1 bench/run.sh                       smoke test: 1 round of 2 s
# bench/bench.py does the work; it stops every process it started when it ends,
# is interrupted, or dies (the processes get PDEATHSIG).
set -euo pipefail
cd "$(dirname "$0")/.."
for b in build/limpet build/floor_relay build/tls_load; do
  [ -x "$b" ] || { echo "bench/run.sh: $b missing; run: make bench" >&2; exit 1; }
done
for t in haproxy nginx wrk; do
  command -v "$t" >/dev/null || { echo "bench/run.sh: $t missing; run: make bench" >&2; exit 1; }
done
# 5,000 idle client connections, and as many to the origins: raise the open-file limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
py=/usr/bin/python3
trap 'kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null' INT TERM HUP
"$py" bench/bench.py "$@" &
child=$!
wait "$child"
