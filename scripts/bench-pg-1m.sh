#!/usr/bin/env bash
# A million documents in PostgreSQL (issue #15; BENCHMARKS.md "PostgreSQL"): GET latency and the
# node's resident memory with 1,000 documents and with 1,000,000 (333,334 users × 3: a buddy
# list, presence rules, a PIDF each), in one run on one scratch cluster (scripts/pg-scratch.sh,
# loopback). The documents are seeded with SQL (a million PUTs would take the better part of
# an hour); the node is restarted after seeding, so it starts on the full table. GETs are
# spread over every user's buddy list (xcapd-load `{n%M}`); PostgreSQL gets shared_buffers =
# 1 GB. Loopback only.
#
#   scripts/bench-pg-1m.sh [seconds] [documents]         (defaults: 10, 1000000)
#   BENCH_CACHE_MB=N scripts/bench-pg-1m.sh ...           the node's read cache bound
#                                                         (storage.cache_capacity_mb; default 32)
set -euo pipefail
export XCAPD_SIP=127.0.0.1:0 XCAPD_ADMIN_LISTEN=127.0.0.1:0
cd "$(dirname "$0")/.."
SECS=${1:-10}
BIG=${2:-1000000}
PORT=${BENCH_PORT:-18390}
PGPORT=${BENCH_PG_PORT:-55441}
WORK=$(mktemp -d /tmp/xcapd-bench-1m.XXXXXX)
chmod 755 "$WORK"
cargo build --release --bin xcapd --bin xcapd-load >/dev/null
BIN=target/release/xcapd
LOAD=target/release/xcapd-load
X=http://127.0.0.1:$PORT/xcap-root
SRV=

cleanup() {
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null || true
  bash scripts/pg-scratch.sh stop "$WORK/pg"
  rm -rf "$WORK"
}
trap cleanup EXIT

# A buffer cache that holds the table, as an operator would size it for a million documents
# (the default, 128 MB, is a tenth of it).
URL=$(PG_SCRATCH_OPTIONS="-c shared_buffers=1GB" bash scripts/pg-scratch.sh start "$WORK/pg" "$PGPORT")
export XCAPD_STORAGE=postgres XCAPD_POSTGRES_URL="$URL"
$BIN migrate >/dev/null

seed() { # total documents (users = total / 3)
  python3 - "$1" > "$WORK/seed.sql" <<'PY'
import sys
users = int(sys.argv[1]) // 3
bodies = {
    "resource-lists": '<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="friends">'
    + "".join(f'<entry uri="sip:friend{i}@example.com"/>' for i in range(10)) + "</list></resource-lists>\n",
    "pres-rules": '<?xml version="1.0" encoding="UTF-8"?>\n<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules"><cr:rule id="a"><cr:conditions/><cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions></cr:rule></cr:ruleset>\n',
    "pidf-manipulation": '<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:someone@example.com"><tuple id="t"><status><basic>open</basic></status></tuple></presence>\n',
}
values = ", ".join(f"('{a}', $q${b}$q$)" for a, b in bodies.items())
print(f"""INSERT INTO documents (auid, tree, path, body, etag, modified_ms)
SELECT d.auid, 'sip:u' || g || '@example.com', 'index', d.body, md5(d.auid || g), 0
FROM generate_series(0, {users - 1}) g CROSS JOIN (VALUES {values}) d(auid, body)
ON CONFLICT DO NOTHING;""")
PY
  psql -q "$URL" -f "$WORK/seed.sql"
  echo "$(( $1 / 3 ))"
}

measure() { # label, users
  local label=$1 users=$2
  [ -n "$SRV" ] && { kill "$SRV"; wait "$SRV" 2>/dev/null || true; }
  local t0=$(date +%s.%N)
  printf '[storage]\ncache_capacity_mb = %s\n' "${BENCH_CACHE_MB:-32}" > "$WORK/xcapd.toml"
  XCAPD_AUTH=none XCAPD_LOG=warn $BIN serve --config "$WORK/xcapd.toml" --http 127.0.0.1:$PORT \
    --data "$WORK/data" &
  SRV=$!
  for _ in $(seq 1 1200); do curl -sf $X/xcap-caps/global/index >/dev/null && break; sleep 0.1; done
  local t1=$(date +%s.%N)
  # Warm-up (connections, caches), then the measured run.
  $LOAD --duration 2 --connections 4 --url "$X/resource-lists/users/sip:u{n%$users}@example.com/index" >/dev/null
  printf '%-26s start %5.1f s  ' "$label" "$(awk "BEGIN {print $t1 - $t0}")"
  $LOAD --duration "$SECS" --connections 4 --url "$X/resource-lists/users/sip:u{n%$users}@example.com/index" | tr '\n' ' '
  echo " RSS $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$SRV/status)"
}

echo "== xcapd $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, ${SECS}s per run, read cache ${BENCH_CACHE_MB:-32} MB, $("$(ls -d /usr/lib/postgresql/*/bin | tail -1)/postgres" --version)"
users=$(seed 1000)
measure "1,000 documents" "$users"
users=$(seed "$BIG")
echo "($(psql -tAq "$URL" -c 'SELECT count(*) FROM documents') documents, table $(psql -tAq "$URL" -c "SELECT pg_size_pretty(pg_total_relation_size('documents'))"))"
measure "$BIG documents" "$users"
