#!/usr/bin/env bash
# faultfs passthrough overhead: fsync'd sequential writes through the mount against the bare
# backing directory (under $TMPDIR, default /tmp). Needs root and /dev/fuse. Numbers go in
# docs/faultfs.md. Usage: scripts/bench-faultfs.sh [TOTAL_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p faultline-faultfs --example faultfs_bench -- "${1:-32}"
