#!/usr/bin/env bash
# Opens a run's report in headless Chromium: a screenshot of index.html, timeline.html and the
# two plots, the
# DOM of the timeline after its script ran, and Chromium's console log.
#
#   scripts/screenshot-report.sh RUN_DIR OUT_DIR
#
# Writes OUT_DIR/{index,timeline,latency,rate}.png, OUT_DIR/timeline.dom.html and
# OUT_DIR/console.log; exits 1 if a page logged a script error or the timeline's script did not
# run to its end. Needs Debian's chromium (`apt-get install -y chromium`); exits 77 without it.
set -euo pipefail

run_dir=$(cd "${1:?usage: $0 RUN_DIR OUT_DIR}" && pwd)
out_dir=${2:?usage: $0 RUN_DIR OUT_DIR}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [[ -z "$chromium" ]]; then
    echo "screenshot-report: chromium not found (apt-get install -y chromium)" >&2
    exit 77
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# No network, no first-run work, no background services: the pages are local files.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --disable-extensions --hide-scrollbars
       --user-data-dir="$profile" --enable-logging=stderr --v=0 --window-size=1400,900
       --virtual-time-budget=3000)
: >"$out_dir/console.log"
for page in index.html timeline.html latency.svg rate.svg; do
    timeout 60 "$chromium" "${flags[@]}" --screenshot="$out_dir/${page%.*}.png" "file://$run_dir/$page" \
        >/dev/null 2>>"$out_dir/console.log"
done
timeout 60 "$chromium" "${flags[@]}" --dump-dom "file://$run_dir/timeline.html" \
    >"$out_dir/timeline.dom.html" 2>>"$out_dir/console.log"

status=0
if grep -E 'CONSOLE.*(Uncaught|Error)' "$out_dir/console.log" >&2; then
    echo "screenshot-report: a page logged a script error" >&2
    status=1
fi
if ! grep -q 'data-timeline-ready="yes"' "$out_dir/timeline.dom.html"; then
    echo "screenshot-report: the timeline's script did not run to its end" >&2
    status=1
fi
for page in index timeline latency rate; do
    [[ -s "$out_dir/$page.png" ]] || { echo "screenshot-report: no $page.png" >&2; status=1; }
done
echo "screenshot-report: $out_dir/{index,timeline,latency,rate}.png"
exit $status
