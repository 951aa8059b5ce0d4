#!/usr/bin/env bash
# Installs the Debian packages whose commands are missing. Arguments are command:package pairs,
# e.g. `scripts/ensure-packages.sh ip:iproute2 iptables:iptables`. Needs root when it installs.
set -euo pipefail
missing=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "$(basename "${0}"): installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
