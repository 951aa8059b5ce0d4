#!/usr/bin/env bash
# The main job: a torture test of a 5-node faultline-node cluster, each node in its own network
# namespace, for 60 s under the default nemesis (partitions of every shape, isolated pauses, kills,
# crashes, pauses, Figure 8 and a restarted voter, one at a time in a seeded rotation), checked
# while it runs and at the end.
# Installs what it needs on a fresh Debian machine. Run as root. Extra arguments go to
# `faultline test` (e.g. --seed 42, --bug stale-read, --time-limit 300).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-packages.sh ip:iproute2 iptables:iptables

cargo build --release --workspace --bins
bin="${CARGO_TARGET_DIR:-target}/release"
exec "$bin/faultline" test --nodes 5 --time-limit 60 \
  --node-bin "$bin/faultline-node" "$@"
