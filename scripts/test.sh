#!/usr/bin/env bash
# Runs every test of the workspace. On a fresh Debian machine it first installs what the tests need
# (iproute2 and iptables for the namespace tests, fuse3 and libfuse3-dev for faultfs and the disk
# faults, faketime (which brings libfaketime) for the clock faults, chromium for the report screenshots, python3 for
# the toy db, etcd-server for the etcd tests, Redis with Sentinel and ZooKeeper with kazoo for the
# system-file tests). Run as root:
# the harness tests build real clusters in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-packages.sh ip:iproute2 iptables:iptables chromium:chromium python3:python3 etcd:etcd-server \
  fusermount3:fuse3 pkg-config:pkg-config faketime:faketime \
  redis-server:redis-server redis-sentinel:redis-sentinel \
  /usr/share/java/zookeeper.jar:zookeeperd /usr/lib/python3/dist-packages/kazoo/__init__.py:python3-kazoo
# faultfs links libfuse3 (found through pkg-config); the -dev package has no command to look for.
if ! pkg-config --exists fuse3; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfuse3-dev >/dev/null
fi

# chromium was installed above, so the report's browser test must run, not skip; the same for the
# Redis and ZooKeeper tests of tests/harness_systems.rs.
export FAULTLINE_REQUIRE_CHROMIUM=1
export FAULTLINE_REQUIRE_SYSTEMS=1

# Build every binary first: the harness tests start target/debug/faultline-node.
cargo build --workspace --all-targets
cargo test --workspace "$@"
