#!/usr/bin/env bash
# Runs every test of the workspace. On a fresh Debian machine it first installs what the tests need
# (iproute2 and iptables for the namespace tests, chromium for the report screenshots, python3 for
# the toy db, etcd-server for the etcd tests). Run as root:
# the harness tests build real clusters in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-packages.sh ip:iproute2 iptables:iptables chromium:chromium python3:python3 etcd:etcd-server

# chromium was installed above, so the report's browser test must run, not skip.
export FAULTLINE_REQUIRE_CHROMIUM=1

# Build every binary first: the harness tests start target/debug/faultline-node.
cargo build --workspace --all-targets
cargo test --workspace "$@"
