#!/usr/bin/env bash
# Runs every test of the workspace. On a fresh Debian machine it first installs what the tests need
# (iproute2 and iptables for the namespace tests; chromium for the report screenshots). Run as root:
# the harness tests build real clusters in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)  # tests/harness_etcd.rs
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# chromium was installed above, so the report's browser test must run, not skip.
export FAULTLINE_REQUIRE_CHROMIUM=1

# Build every binary first: the harness tests start target/debug/faultline-node.
cargo build --workspace --all-targets
cargo test --workspace "$@"
