#!/usr/bin/env bash
# The finding-level runs of the systems described by files (docs/systems.md): Redis with Sentinel
# under partitions that isolate the primary (acknowledged writes lost on failover), and ZooKeeper
# with plain reads and with sync before reads, under partitions that isolate one node (a follower
# four times in five) and under kill/pause. One `faultline test` per cell and seed; prints a
# Markdown table of verdicts with seeds and the lost-element counts of Redis's set-full check.
#
# Environment: SYSTEMS_MATRIX_SEEDS (default 1,2,3), SYSTEMS_MATRIX_REDIS_SECONDS (load per Redis
# run, default 60), SYSTEMS_MATRIX_ZK_SECONDS (default 30), SYSTEMS_MATRIX_STORE (default
# store/systems-matrix), SYSTEMS_MATRIX_ONLY (redis or zookeeper), FAULTLINE_BIN (default: build
# release). Run as root; installs redis-server, redis-sentinel, zookeeperd and python3-kazoo.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-packages.sh redis-server:redis-server redis-sentinel:redis-sentinel \
  /usr/share/java/zookeeper.jar:zookeeperd /usr/lib/python3/dist-packages/kazoo/__init__.py:python3-kazoo

seeds="${SYSTEMS_MATRIX_SEEDS:-1,2,3}"
redis_seconds="${SYSTEMS_MATRIX_REDIS_SECONDS:-60}"
zk_seconds="${SYSTEMS_MATRIX_ZK_SECONDS:-30}"
store="${SYSTEMS_MATRIX_STORE:-store/systems-matrix}"
only="${SYSTEMS_MATRIX_ONLY:-}"
if [ -z "${FAULTLINE_BIN:-}" ]; then
  cargo build --release -p faultline --bins
  FAULTLINE_BIN=target/release/faultline
fi

# name | system | time limit | `faultline test` arguments
matrix=()
if [ "$only" != zookeeper ]; then
  matrix+=(
    "redis set, isolate primary|redis-sentinel|$redis_seconds|--workload set --nemesis partition --partition-shapes isolate-leader --nemesis-interval 5 --rate 200"
    "redis cas-register, isolate primary|redis-sentinel|$redis_seconds|--workload cas-register --nemesis partition --partition-shapes isolate-leader --nemesis-interval 5 --rate 200"
  )
fi
if [ "$only" != redis ]; then
  for reads in plain sync; do
    matrix+=(
      "zookeeper reads=$reads, isolate one|zookeeper|$zk_seconds|--system-options reads=$reads --workload cas-register --nemesis partition --partition-shapes isolate-one --nemesis-interval 3 --concurrency 15 --keys 3 --rate 200"
      "zookeeper reads=$reads, kill+pause|zookeeper|$zk_seconds|--system-options reads=$reads --workload cas-register --nemesis kill,pause --nemesis-interval 3 --concurrency 15 --keys 3 --rate 200"
    )
  done
fi

mkdir -p "$store"
echo "| run | seed | verdict | ops ok/fail/info | faults | finding |"
echo "|-----|------|---------|------------------|--------|---------|"
for cell in "${matrix[@]}"; do
  IFS='|' read -r name system seconds extra <<<"$cell"
  for seed in ${seeds//,/ }; do
    test_store="$store/$(echo "$name" | tr -c 'a-z0-9=' '-')"
    # shellcheck disable=SC2086
    "$FAULTLINE_BIN" test --system "$system" --name "seed-$seed" --seed "$seed" --time-limit "$seconds" \
      --recovery 5 --store "$test_store" $extra >"$test_store.seed-$seed.log" 2>&1 || true
    # The newest run of this cell and seed.
    run_dir="$(ls -d "$test_store/seed-$seed"/*/ 2>/dev/null | tail -1)"
    results="${run_dir}results.json"
    if [ ! -f "$results" ]; then
      echo "| $name | $seed | harness failure | | | see $test_store.seed-$seed.log |"
      continue
    fi
    python3 - "$results" "$name" "$seed" <<'PY'
import json, sys
results, name, seed = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
ops = results["ops"]
finding = []
for check in results.get("workload_checks", []):
    if check["verdict"] != "valid":
        finding.append("%s: %s" % (check["checker"], check["summary"][:160]))
anomalies = results.get("checker", {}).get("anomalies", [])
if anomalies:
    finding.append(anomalies[0].get("text", "").splitlines()[0][:160])
verdict = results["verdict"] + (" (vacuous)" if results["vacuous"] else "")
print("| %s | %s | %s | %d/%d/%d | %d | %s |" % (name, seed, verdict, ops["ok"], ops["fail"], ops["info"],
      results["faults_started"], "; ".join(finding) or "-"))
PY
  done
done
