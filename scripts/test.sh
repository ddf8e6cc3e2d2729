#!/usr/bin/env bash
# The README's test command (`make test`): every test target, then one closing line that sums
# the runners' results ("N passed, N failed"), so the last line speaks for the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
pg=""
cleanup() {
  rm -f "$log"
  if [ -n "$pg" ]; then bash scripts/pg-scratch.sh stop "$pg"; rm -rf "$pg"; fi
}
trap cleanup EXIT
# The PostgreSQL storage suites (issue #15) run against XCAPD_TEST_POSTGRES_URL; when it is
# not set and PostgreSQL is installed, a scratch cluster on loopback serves this run.
if [ -z "${XCAPD_TEST_POSTGRES_URL:-}" ] && { ls /usr/lib/postgresql/*/bin/initdb || command -v initdb; } >/dev/null 2>&1; then
  pg=$(mktemp -d /tmp/xcapd-pg.XXXXXX)
  XCAPD_TEST_POSTGRES_URL=$(bash scripts/pg-scratch.sh start "$pg" "${XCAPD_TEST_POSTGRES_PORT:-55432}")
  export XCAPD_TEST_POSTGRES_URL
fi
if [ -z "${XCAPD_TEST_POSTGRES_URL:-}" ]; then
  echo "PostgreSQL is not installed: the PostgreSQL storage suites are not built (apt install postgresql)" >&2
fi
status=0
cargo test --all-targets 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
