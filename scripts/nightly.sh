#!/usr/bin/env bash
# The nightly torture run: `faultline torture` over the register, cas-register, append and set
# workloads under partition, kill and pause mixes against a 5-node faultline-node cluster, plus every
# saved scenario in scenarios/, for a fixed budget (NIGHTLY_BUDGET_S, default 1800 s = 30 min).
# The seeds change every night (derived from the date) so the nights together cover more schedules;
# each run's seed is in its test.json and torture.json, and `faultline test --replay <run-dir>` or
# `faultline torture --save-scenario NAME --from <run-dir>` keeps a finding.
# Run as root. Exit code: faultline torture's (1 invalid, 2 unknown, 4 harness failure).
# Extra arguments go to every `faultline test` (e.g. --bug stale-read to see the matrix fail).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-packages.sh ip:iproute2 iptables:iptables

budget_s="${NIGHTLY_BUDGET_S:-1800}"
store="${NIGHTLY_STORE:-store/nightly}"
day="$(date -u +%Y%m%d)"
seeds="${NIGHTLY_SEEDS:-${day}1,${day}2,${day}3}"

cargo build --release --workspace --bins
exec target/release/faultline torture \
  --workloads register,cas-register,append,set \
  --nemeses 'partition;kill;pause;partition,kill,pause' \
  --seeds "$seeds" \
  --time-limit 20 \
  --budget "$budget_s" \
  --store "$store" \
  --scenarios scenarios \
  -- --nodes 5 --nemesis-interval 4 --node-bin target/release/faultline-node "$@"
