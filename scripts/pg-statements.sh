#!/usr/bin/env bash
# What one request costs a PostgreSQL node (issue #15; BENCHMARKS.md "PostgreSQL"): the
# statements PostgreSQL ran per request (pg_stat_statements) and the CPU time per request of
# xcapd and of PostgreSQL (/proc/<pid>/stat of xcapd and of every process of the cluster), for
# one load scenario on one node over a scratch cluster. Unlike requests per second these do
# not move with what else the machine runs, so they tell an A/B of a change on a shared or
# noisy machine. Loopback only.
#
#   scripts/pg-statements.sh [put|element|get] [seconds]      (default: put 5)
#   BENCH_BIN=/path/to/xcapd scripts/pg-statements.sh ...     (another build to compare)
set -euo pipefail
export XCAPD_SIP=127.0.0.1:0 XCAPD_ADMIN_LISTEN=127.0.0.1:0
cd "$(dirname "$0")/.."
SCENARIO=${1:-put}
SECS=${2:-5}
PORT=${BENCH_PORT:-18390}
PGPORT=${BENCH_PG_PORT:-55450}
WORK=$(mktemp -d /tmp/xcapd-pg-statements.XXXXXX)
chmod 755 "$WORK"
cargo build --release --bin xcapd --bin xcapd-load >/dev/null
BIN=${BENCH_BIN:-target/release/xcapd}
LOAD=target/release/xcapd-load
RL=application/resource-lists+xml
ROOT=http://127.0.0.1:$PORT/xcap-root
SERVER=""

cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  bash scripts/pg-scratch.sh stop "$WORK/pg"
  rm -rf "$WORK"
}
trap cleanup EXIT

URL=$(PG_SCRATCH_OPTIONS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all" \
  bash scripts/pg-scratch.sh start "$WORK/pg" "$PGPORT")
sql() { psql -qAt "$URL" -c "$1"; }
sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

env XCAPD_AUTH=none XCAPD_LOG=error XCAPD_STORAGE=postgres XCAPD_POSTGRES_URL="$URL" \
  "$BIN" serve --http 127.0.0.1:$PORT --data "$WORK/node" &
SERVER=$!
for _ in $(seq 1 100); do curl -sf "$ROOT/xcap-caps/global/index" >/dev/null && break; sleep 0.1; done

python3 scripts/resource-list.py 100 > "$WORK/l100.xml"
SMALL="$ROOT/resource-lists/users/sip:small@example.com/index"
curl -sf -X PUT -H "Content-Type: $RL" --data-binary @"$WORK/l100.xml" "$SMALL" >/dev/null
case "$SCENARIO" in
put) ARGS=(--connections 4 --method PUT --content-type $RL --body-file "$WORK/l100.xml"
  --url "$ROOT/resource-lists/users/sip:writer_{c}@example.com/index") ;;
element) ARGS=(--connections 1 --method PUT --content-type application/xcap-el+xml
  --body '<entry uri="sip:new_{n}@example.com"/>'
  --url "$SMALL/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22sip:new_{n}@example.com%22%5D") ;;
get) ARGS=(--connections 4 --url "$SMALL") ;;
*) echo "usage: $0 [put|element|get] [seconds]" >&2; exit 2 ;;
esac

# CPU ticks of xcapd and of the cluster's processes (postmaster and its children).
postmaster=$(head -1 "$WORK/pg/data/postmaster.pid")
ticks() {
  local pids=("$SERVER" "$postmaster" $(pgrep -P "$postmaster" || true)) x=0 p=0
  for pid in "${pids[@]}"; do
    local t; t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    if [ "$pid" = "$SERVER" ]; then x=$t; else p=$((p + t)); fi
  done
  echo "$x $p"
}
sql "SELECT pg_stat_statements_reset()" >/dev/null
read -r x0 p0 < <(ticks)
$LOAD --duration "$SECS" "${ARGS[@]}" > "$WORK/load.out"
read -r x1 p1 < <(ticks)
requests=$(grep -o 'requests=[0-9]*' "$WORK/load.out" | cut -d= -f2)
hz=$(getconf CLK_TCK)
echo "== $("$BIN" --version 2>/dev/null || echo xcapd) $(git rev-parse --short HEAD 2>/dev/null), scenario $SCENARIO, ${SECS}s"
cat "$WORK/load.out"
awk -v r="$requests" -v hz="$hz" -v x=$((x1 - x0)) -v p=$((p1 - p0)) 'BEGIN {
  printf "CPU per request: xcapd %.3f ms, PostgreSQL %.3f ms\n", x * 1000 / hz / r, p * 1000 / hz / r }'
echo "statements per request (calls / $requests), top 12:"
sql "SELECT round(calls::numeric / $requests, 3) || '  ' || left(regexp_replace(query, '\s+', ' ', 'g'), 110)
     FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC LIMIT 12"
