#!/usr/bin/env bash
# Benchmarks faultline-node: 3 nodes on loopback, fsync on, small values;
# 1 / 64 / 256 / 1000 concurrent clients; writes/s with p50/p99/max latency,
# then linearizable (ReadIndex) reads/s. Every node is killed on exit.
#
# Usage: scripts/bench-node.sh [seconds-per-run]   (env: CLIENTS="1 64 256 1000", BASE_PORT=17101,
#        NODE_ARGS="--replication primary-copy" for extra faultline-node flags)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
CLIENTS="${CLIENTS:-1 64 256 1000}"
# Extra faultline-node flags, split on spaces (e.g. "--replication primary-copy").
read -r -a NODE_ARGS <<<"${NODE_ARGS:-}"
BASE_PORT="${BASE_PORT:-17101}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-node}"
cargo build --release -q -p faultline-node --bins
BIN="$CARGO_TARGET_DIR/release"

DATA="$(mktemp -d -t faultline-bench-XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

ADDRS=()
PEERS=""
for i in 1 2 3; do
  ADDRS+=("127.0.0.1:$((BASE_PORT + i))")
  PEERS+="${PEERS:+,}$i=127.0.0.1:$((BASE_PORT + i))"
done
NODES="$(IFS=,; echo "${ADDRS[*]}")"

for i in 1 2 3; do
  RUST_LOG=warn "$BIN/faultline-node" --id "$i" --listen "${ADDRS[$((i - 1))]}" --peers "$PEERS" \
    --data-dir "$DATA/n$i" ${NODE_ARGS[@]+"${NODE_ARGS[@]}"} 2>"$DATA/n$i.log" &
  PIDS+=($!)
done
sleep 2

base=1
echo "# faultline-node bench: 3 nodes on loopback, fsync on, ${SECONDS_PER_RUN}s per run ${NODE_ARGS[*]+${NODE_ARGS[*]}}"
for n in $CLIENTS; do
  "$BIN/faultline-node-bench" --nodes "$NODES" --clients "$n" --seconds "$SECONDS_PER_RUN" --mode write --client-id-base "$base"
  base=$((base + n))
done
for n in $CLIENTS; do
  "$BIN/faultline-node-bench" --nodes "$NODES" --clients "$n" --seconds "$SECONDS_PER_RUN" --mode read --client-id-base "$base"
  base=$((base + n))
done
