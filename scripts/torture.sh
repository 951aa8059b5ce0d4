#!/usr/bin/env bash
# The main job: a torture test of a 5-node faultline-node cluster, each node in its own network
# namespace, under partitions, kills and pauses for 60 s, then a linearizability check.
# Installs what it needs on a fresh Debian machine. Run as root. Extra arguments go to
# `faultline test` (e.g. --seed 42, --bug stale-read, --time-limit 300).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-packages.sh ip:iproute2 iptables:iptables

cargo build --release --workspace --bins
bin="${CARGO_TARGET_DIR:-target}/release"
exec "$bin/faultline" test --nodes 5 --nemesis partition,kill,pause --time-limit 60 \
  --node-bin "$bin/faultline-node" "$@"
