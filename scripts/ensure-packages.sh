#!/usr/bin/env bash
# Installs the Debian packages whose commands are missing. Arguments are command:package pairs,
# e.g. `scripts/ensure-packages.sh ip:iproute2 iptables:iptables`; a command that is an absolute
# path is a file that must exist (a jar, a Python module). Needs root when it installs.
set -euo pipefail
missing=()
for pair in "$@"; do
  what="${pair%%:*}"
  if [[ "$what" == /* ]]; then
    [ -e "$what" ] || missing+=("${pair#*:}")
  else
    command -v "$what" >/dev/null 2>&1 || missing+=("${pair#*:}")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "$(basename "${0}"): installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
