#!/usr/bin/env bash
# Times the transactional checker (list-append, serializability) on 1,000,000 generated
# transactions of 4 micro-ops over 1,000 keys; see checker/examples/txn_bench.rs. Options are passed
# on (--txns N, --keys N, --consistency NAME, --stale-permille N, --write FILE). Peak memory from /usr/bin/time -v.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p faultline-checker --example txn_bench
bench="${CARGO_TARGET_DIR:-target}/release/examples/txn_bench"
if [ -x /usr/bin/time ]; then
  exec /usr/bin/time -v "$bench" "$@"
fi
exec "$bench" "$@"
