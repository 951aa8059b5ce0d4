#!/usr/bin/env bash
# The bug-detection matrix: for every planted bug of faultline-node (`faultline-node --list-bugs`),
# `faultline torture` with the workload and nemeses that should expose it, over several seeds, and
# the correct node ("none") under every fault family, which must never be flagged. Prints a Markdown
# table: how many seeds found the bug (an invalid verdict) and the time to detection (the run's
# wall time up to its verdict, checking included; median over the seeds that found it).
#
# Environment: BUG_MATRIX_SEEDS (default 1,2,3), BUG_MATRIX_TIME_LIMIT (seconds of load per run,
# default 30), BUG_MATRIX_STORE (default store/bug-matrix), BUG_MATRIX_BUGS (names to run, default
# all), FAULTLINE_BIN (a built faultline with faultline-node next to it; default: build release).
# Run as root. It takes about (bugs + 1) x seeds x (time limit + 15 s).
set -euo pipefail
cd "$(dirname "$0")/.."

# The disk and clock rows need fuse3 and libfaketime (Debian faketime brings it).
scripts/ensure-packages.sh fusermount3:fuse3 faketime:faketime

seeds="${BUG_MATRIX_SEEDS:-1,2,3}"
time_limit="${BUG_MATRIX_TIME_LIMIT:-30}"
store="${BUG_MATRIX_STORE:-store/bug-matrix}"
if [ -z "${FAULTLINE_BIN:-}" ]; then
  cargo build --release --workspace --bins
  FAULTLINE_BIN=target/release/faultline
fi
node_bin="$(dirname "$FAULTLINE_BIN")/faultline-node"

# bug | workload | nemesis mix | more `faultline test` arguments. Why each nemesis: docs/torture.md.
matrix=(
  "stale-read|register|isolated-pause|--nemesis-interval 2 --concurrency 20"
  "follower-stale-read|register|partition|--partition-shapes isolate-one --nemesis-interval 3 --concurrency 20"
  "ack-before-commit|append|partition,kill|--partition-shapes isolate-leader --nemesis-targets leader --nemesis-interval 3"
  "no-vote-persist|append|restart-voter|--nemesis-interval 6"
  "commit-old-term|append|figure-8|--nodes 3 --nemesis-interval 3"
  "no-dedup|append|crash,kill|--nemesis-targets leader --nemesis-interval 1 --rate 500"
  "no-fsync|append|lose-unfsynced|--nemesis-targets all,majority --nemesis-interval 3"
  "lease-trusts-clock|register|clock-strobe,partition|--partition-shapes isolate-leader --nemesis-targets leader --nemesis-interval 2 --concurrency 20 --lease-reads"
  "none|register|partition,kill,pause,isolated-pause|--nemesis-interval 3"
  "none|append|figure-8,crash,partition|--nodes 3 --nemesis-interval 3"
  "none|append|restart-voter,crash,loss|--nemesis-interval 5"
  "none|append|crash,kill|--nemesis-targets leader --nemesis-interval 1 --rate 500"
  "none|append|lose-unfsynced,torn-write|--nemesis-targets one,majority,all --nemesis-interval 3"
  "none|register|clock-strobe,partition|--partition-shapes isolate-leader --nemesis-targets leader --nemesis-interval 2 --concurrency 20 --lease-reads"
  "none|cas-register|clock-offset,clock-strobe,partition,kill|--nemesis-interval 3"
  "none|cas-register|member,partition,kill|--nemesis-interval 3"
)

rows=()
# BUG_MATRIX_TAILORED=0 skips the tailored rows (only the default main job's column below).
[ "${BUG_MATRIX_TAILORED:-1}" = 0 ] && matrix=()
for entry in "${matrix[@]}"; do
  IFS='|' read -r bug workload nemesis extra <<<"$entry"
  if [ -n "${BUG_MATRIX_BUGS:-}" ] && [[ ",${BUG_MATRIX_BUGS}," != *",$bug,"* ]]; then
    continue
  fi
  bug_args=()
  [ "$bug" != none ] && bug_args=(--bug "$bug")
  bug_store="$store/$bug-$workload"
  echo "bug-matrix.sh: $bug: $workload under $nemesis, seeds $seeds" >&2
  # shellcheck disable=SC2086 # $extra is a list of arguments
  "$FAULTLINE_BIN" torture --workloads "$workload" --nemeses "$nemesis" --seeds "$seeds" \
    --time-limit "$time_limit" --budget 100000 --store "$bug_store" --scenarios /nonexistent \
    -- --node-bin "$node_bin" "${bug_args[@]}" $extra >&2 || true
  summary="$(ls -d "$bug_store"/torture/*/ | sort | tail -1)torture.json"
  rows+=("$(python3 - "$summary" "$bug" "$workload" "$nemesis" "$extra" <<'PY'
import json, statistics, sys
path, bug, workload, nemesis, extra = sys.argv[1:]
runs = json.load(open(path))["runs"]
found = [r for r in runs if r["outcome"] == "invalid"]
others = sorted({r["outcome"] for r in runs if r["outcome"] != "invalid"})
times = [r["duration_s"] for r in found]
median = f"{statistics.median(times):.0f} s" if times else "-"
each = ", ".join(f"{r['outcome']} {r['duration_s']:.0f} s" for r in runs)
print(f"| {bug} | {workload} | `{nemesis} {extra}` | {len(found)}/{len(runs)} | {median} | {each} |")
PY
)")
done

if [ "${#rows[@]}" -gt 0 ]; then
  echo
  echo "| bug | workload | nemesis | found (seeds) | median time to detection | runs |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
fi

# The default main job, untailored: every bug under exactly what `scripts/torture.sh --bug B` runs
# (5 nodes, 60 s, the default workload and nemesis), with the online check stopping the run at the
# first certain violation (torture's default). Time to detection is when the online check found
# it (results.json `online.invalid_at_s`), or the run's length when only the end-of-run check did.
# BUG_MATRIX_DEFAULT=0 skips it; BUG_MATRIX_DEFAULT_TIME_LIMIT changes the 60 s.
if [ "${BUG_MATRIX_DEFAULT:-1}" != 0 ]; then
  default_rows=()
  default_time="${BUG_MATRIX_DEFAULT_TIME_LIMIT:-60}"
  # no-fsync and lease-trusts-clock need disk and clock faults, which the default nemesis does
  # not have (they need faultfs and libfaketime under the nodes, and --lease-reads).
  for bug in $("$node_bin" --list-bugs | awk '{print $1}' | grep -v -x -e no-fsync -e lease-trusts-clock) none; do
    if [ -n "${BUG_MATRIX_BUGS:-}" ] && [[ ",${BUG_MATRIX_BUGS}," != *",$bug,"* ]]; then
      continue
    fi
    bug_args=()
    [ "$bug" != none ] && bug_args=(--bug "$bug")
    bug_store="$store/default-$bug"
    echo "bug-matrix.sh: $bug: the default main job, seeds $seeds" >&2
    "$FAULTLINE_BIN" torture --workloads mixed --nemeses default --seeds "$seeds" \
      --time-limit "$default_time" --budget 100000 --store "$bug_store" --scenarios /nonexistent \
      -- --nodes 5 --node-bin "$node_bin" "${bug_args[@]}" >&2 || true
    summary="$(ls -d "$bug_store"/torture/*/ | sort | tail -1)torture.json"
    default_rows+=("$(python3 - "$summary" "$bug" "$bug_store" <<'PY'
import json, os, statistics, sys
path, bug, store = sys.argv[1:]
runs = json.load(open(path))["runs"]
found, times, each = 0, [], []
for r in runs:
    at = None
    results = os.path.join(store, r["run"], "results.json") if r.get("run") else None
    if results and os.path.exists(results):
        at = json.load(open(results)).get("online", {}).get("invalid_at_s")
    if r["outcome"] == "invalid":
        found += 1
        times.append(at if at is not None else r["duration_s"])
    each.append(f"{r['outcome']}" + (f" at {at:.0f} s" if at is not None else f" {r['duration_s']:.0f} s"))
median = f"{statistics.median(times):.0f} s" if times else "-"
print(f"| {bug} | {found}/{len(runs)} | {median} | {', '.join(each)} |")
PY
)")
  done
  echo
  echo "Found by the default main job (scripts/torture.sh --bug B: 5 nodes, ${default_time} s, defaults):"
  echo
  echo "| bug | found (seeds) | median time to detection | runs |"
  echo "|---|---|---|---|"
  printf '%s\n' "${default_rows[@]}"
fi
