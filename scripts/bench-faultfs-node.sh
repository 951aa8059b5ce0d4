#!/usr/bin/env bash
# fsync'd write throughput of a 3-node faultline-node cluster on loopback, with the nodes' data
# directories bare and then each behind its own faultfs mount (the faultline-faultfs binary).
# Needs root and /dev/fuse. Usage: scripts/bench-faultfs-node.sh [SECONDS] [CLIENTS]
# Prints one JSON line per setup (faultline-node-bench's output). Numbers go in docs/faultfs.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
clients="${2:-16}"
cargo build -q -p faultline-node --bins
cargo build -q --release -p faultline-faultfs --bins
node=target/debug/faultline-node
bench=target/debug/faultline-node-bench
faultfs=target/release/faultline-faultfs
root=$(mktemp -d /tmp/faultfs-node-bench.XXXXXX)
nodes=()
mounts=()
# Nodes first, so that no file is open when the file systems unmount.
stop_all() {
  for pid in "${nodes[@]}" "${mounts[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  nodes=()
  mounts=()
}
cleanup() {
  stop_all
  rm -rf "$root"
}
trap cleanup EXIT

run() {
  local setup=$1 base=$2 peers="" i
  for i in 1 2 3; do peers+="$i=127.0.0.1:$((base + i)),"; done
  for i in 1 2 3; do
    mkdir -p "$root/$setup/n$i/data" "$root/$setup/n$i/backing"
    local dir="$root/$setup/n$i/data"
    if [ "$setup" = faultfs ]; then
      "$faultfs" --mountpoint "$dir" --backing "$root/$setup/n$i/backing" \
        --control "$root/$setup/n$i/control.sock" 2>/dev/null &
      mounts+=($!)
      for _ in $(seq 100); do grep -q " $dir fuse.faultfs" /proc/mounts && break; sleep 0.05; done
    fi
    "$node" --id "$i" --listen "127.0.0.1:$((base + i))" --peers "${peers%,}" --data-dir "$dir" \
      2>/dev/null &
    nodes+=($!)
  done
  sleep 2
  local addrs="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
  echo "{\"setup\":\"$setup\",\"result\":$("$bench" --nodes "$addrs" --clients "$clients" --seconds "$seconds")}"
  stop_all
}

run bare 17300
run faultfs 17400
