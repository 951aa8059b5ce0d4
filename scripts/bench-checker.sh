#!/usr/bin/env bash
# Times the checker on porcupine's corpus and on a generated 1,000,000-event kv history.
# Single-threaded, parse time excluded. Pass --only NAME to run one line (e.g. --only etcd),
# --threads N to use more cores, --memory-mib N for another memory budget per search (default
# 2048). Peak memory is printed by /usr/bin/time when it is there. `--only ladder` times the
# consistency ladder (sequential consistency, staleness) on every non-linearizable history instead.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p faultline-checker --example bench
bench="${CARGO_TARGET_DIR:-target}/release/examples/bench"
if [ -x /usr/bin/time ]; then
  exec /usr/bin/time -f 'peak RSS %M KiB, %e s wall' "$bench" "$@"
fi
exec "$bench" "$@"
