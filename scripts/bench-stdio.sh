#!/usr/bin/env bash
# The stdio client protocol's cost (docs/systems.md), with `faultline bench` (closed loop, no
# nemesis) on a 3-node cluster in namespaces:
#   1. throughput over 32 workers with a trivial echo client (tests/systems/echo: perl answers
#      every request with {"type":"ok"}): the harness's side of the protocol; target >= 50,000 ops/s;
#   2. latency with one worker and the echo client: the protocol's per-op round trip;
#   3. per-op overhead of a stdio client against a built-in one, on the same Redis server:
#      the built-in RESP client (tests/systems/redis-single) vs a Python stdio client speaking RESP
#      (tests/systems/redis-single-stdio), one worker and 16 workers, writes.
# Environment: BENCH_SECONDS (default 10), FAULTLINE_BIN (default: build release). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-packages.sh perl:perl-base redis-server:redis-server
seconds="${BENCH_SECONDS:-10}"
if [ -z "${FAULTLINE_BIN:-}" ]; then
  cargo build --release -p faultline --bins
  FAULTLINE_BIN=target/release/faultline
fi
bench() { "$FAULTLINE_BIN" bench --nodes 3 --duration "${seconds}s" --keys 100 "$@" | head -1; }
echo "== stdio echo, 32 workers (target >= 50,000 ops/s)"
bench --system tests/systems/echo --clients 32 --mix mixed
echo "== stdio echo, 1 worker (the protocol's round trip)"
bench --system tests/systems/echo --clients 1 --mix write
for clients in 1 16; do
  echo "== Redis, $clients worker(s): built-in RESP client, then a Python stdio client"
  bench --system tests/systems/redis-single --clients "$clients" --mix write
  bench --system tests/systems/redis-single-stdio --clients "$clients" --mix write
done
