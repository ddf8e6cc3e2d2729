#!/usr/bin/env bash
# The README's test command (`make test`): every test target, then one closing line that sums
# the runners' results ("N passed, N failed"), so the last line speaks for the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
