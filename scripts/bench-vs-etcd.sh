#!/usr/bin/env bash
# faultline-node and etcd side by side: the same closed-loop generator (`faultline bench`) against
# a healthy 3-node cluster of each, built as `faultline test` builds clusters (one node per network
# namespace on a private bridge, clients in the bridge namespace), fsync on for both, data under
# the temp dir. For each mix and client count, both stores run one after the other on the same
# machine. Prints a Markdown table; the JSON of every run is kept in $OUT.
#
# Usage (root): scripts/bench-vs-etcd.sh [seconds-per-run]
#   env: CLIENTS="64 256"  MIXES="write read mixed"  VALUE_SIZE=100  OUT=<dir>  ETCD_BIN=etcd
# Needs etcd (apt-get install -y etcd-server), iproute2, iptables.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
CLIENTS="${CLIENTS:-64 256}"
MIXES="${MIXES:-write read mixed}"
VALUE_SIZE="${VALUE_SIZE:-100}"
ETCD_BIN="${ETCD_BIN:-etcd}"
cargo build --release -q -p faultline -p faultline-node
BIN="${CARGO_TARGET_DIR:-target}/release"
OUT="${OUT:-$(mktemp -d -t faultline-bench-vs-etcd-XXXXXX)}"
mkdir -p "$OUT"

for mix in $MIXES; do
  for clients in $CLIENTS; do
    for db in faultline-node etcd; do
      "$BIN/faultline" bench --db "$db" --etcd-bin "$ETCD_BIN" --node-bin "$BIN/faultline-node" \
        --clients "$clients" --mix "$mix" --value-size "$VALUE_SIZE" --duration "${SECONDS_PER_RUN}s" \
        --json "$OUT/$mix-$clients-$db.json" >&2
    done
  done
done

echo
echo "3 nodes, $VALUE_SIZE-byte values, 1000 keys, ${SECONDS_PER_RUN}s per run (1 s warm-up not measured), $(nproc) cores"
echo
echo "| mix | clients | store | ops/s | p50 ms | p99 ms | max ms | fail | info |"
echo "|-----|--------:|-------|------:|-------:|-------:|-------:|-----:|-----:|"
for mix in $MIXES; do
  for clients in $CLIENTS; do
    for db in faultline-node etcd; do
      jq -r --arg mix "$mix" --arg clients "$clients" \
        '"| \($mix) | \($clients) | \(.db) | \(.ops_per_second | floor) | \(.latency_ms.p50) | \(.latency_ms.p99) | \(.latency_ms.max) | \(.fail) | \(.info) |"' \
        "$OUT/$mix-$clients-$db.json"
    done
  done
done
echo
echo "JSON: $OUT" >&2
