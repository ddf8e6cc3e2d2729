#!/usr/bin/env bash
# PostgreSQL against sled (issue #15; BENCHMARKS.md "PostgreSQL"): the same release xcapd on
# sled and on a scratch PostgreSQL cluster (scripts/pg-scratch.sh, loopback, fsync on), then
# two nodes on that database with the load split between them, in one run: durable PUT
# document, PUT element, GET document; then write → xcap-diff NOTIFY latency through one node
# and across the nodes (written through A, notified by B: the change fan-out), with
# benches/notify.rs. Loopback only.
#
#   scripts/bench-pg.sh [--quick] [seconds-per-scenario]        (default 10)
#
# --quick: sled and one PostgreSQL node only (the three load scenarios, no notify, no second
# node), for an A/B of a change in a few minutes.
set -euo pipefail
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
export XCAPD_SIP=127.0.0.1:0 XCAPD_ADMIN_LISTEN=127.0.0.1:0
cd "$(dirname "$0")/.."
SECS=${1:-10}
PORT=${BENCH_PORT:-18380}
PGPORT=${BENCH_PG_PORT:-55440}
WORK=$(mktemp -d /tmp/xcapd-bench-pg.XXXXXX)
chmod 755 "$WORK"
cargo build --release --bin xcapd --bin xcapd-load --bin xcapd-bench-notify >/dev/null
BIN=${BENCH_BIN:-target/release/xcapd}   # BENCH_BIN: another build to compare
LOAD=target/release/xcapd-load
NOTIFY=target/release/xcapd-bench-notify
SIP=${BENCH_SIP_PORT:-15540}
RL=application/resource-lists+xml
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  bash scripts/pg-scratch.sh stop "$WORK/pg"
  rm -rf "$WORK"
}
trap cleanup EXIT

URL=$(bash scripts/pg-scratch.sh start "$WORK/pg" "$PGPORT")

serve() { # port, data dir, extra env...
  local port=$1 data=$2; shift 2
  env XCAPD_AUTH=none XCAPD_LOG=warn "$@" $BIN serve --http 127.0.0.1:$port --data "$data" &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$port/xcap-root/xcap-caps/global/index >/dev/null && break; sleep 0.1; done
}

python3 scripts/resource-list.py 100 > "$WORK/l100.xml"

scenarios() { # label, root URL(s)...
  local label=$1; shift
  local roots=("$@")
  for r in "${roots[@]}"; do
    curl -sf -X PUT -H "Content-Type: $RL" --data-binary @"$WORK/l100.xml" "$r/resource-lists/users/sip:small@example.com/index" >/dev/null || true
  done
  local n=${#roots[@]} conns=$(( 4 / ${#roots[@]} ))
  split() { # name, load args with ROOT
    local name=$1; shift
    local outs=()
    for i in "${!roots[@]}"; do
      local args=("${@//ROOT/${roots[$i]}}")
      args=("${args[@]//NODE/$i}")
      $LOAD --duration "$SECS" "${args[@]}" > "$WORK/out.$i" 2>&1 &
      outs+=($!)
    done
    for p in "${outs[@]}"; do wait "$p" || true; done   # a run with unexpected answers still reports
    printf '%-22s %-44s ' "$label" "$name"
    for i in "${!roots[@]}"; do tr '\n' ' ' < "$WORK/out.$i"; done
    echo
  }
  split "PUT document, 100 entries, durable" --connections $conns --method PUT --content-type $RL \
    --body-file "$WORK/l100.xml" --url "ROOT/resource-lists/users/sip:writerNODE_{c}@example.com/index"
  split "PUT element into 100-entry list" --connections 1 --method PUT --content-type application/xcap-el+xml \
    --body '<entry uri="sip:newNODE_{n}@example.com"/>' \
    --url "ROOT/resource-lists/users/sip:small@example.com/index/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22sip:newNODE_{n}@example.com%22%5D"
  split "GET document, 100 entries" --connections $conns --url "ROOT/resource-lists/users/sip:small@example.com/index"
}

echo "== xcapd $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, ${SECS}s per scenario, $("$(ls -d /usr/lib/postgresql/*/bin | tail -1)/postgres" --version)"
serve $PORT "$WORK/sled"
scenarios "sled" "http://127.0.0.1:$PORT/xcap-root"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
A=http://127.0.0.1:$((PORT + 1))/xcap-root
B=http://127.0.0.1:$((PORT + 2))/xcap-root
serve $((PORT + 1)) "$WORK/pg-a" XCAPD_STORAGE=postgres XCAPD_POSTGRES_URL="$URL" XCAPD_SIP=127.0.0.1:$((SIP + 1))
scenarios "postgres, one node" "$A"
[ "$QUICK" = 1 ] && exit 0
echo "-- write → NOTIFY, one node (1,000 subscriptions, 100 writes/s; written and notified by A; 6 s after subscribing, past the 5 s notify interval)"
$NOTIFY --sip 127.0.0.1:$((SIP + 1)) --http "$A" --subscribers 1000 --rate 100 --duration "$SECS" --settle 6
serve $((PORT + 2)) "$WORK/pg-b" XCAPD_STORAGE=postgres XCAPD_POSTGRES_URL="$URL" XCAPD_SIP=127.0.0.1:$((SIP + 2))
scenarios "postgres, two nodes" "$A" "$B"
echo "-- write → NOTIFY across nodes (1,000 subscriptions at B, 100 writes/s through A)"
$NOTIFY --sip 127.0.0.1:$((SIP + 2)) --http "$A" --subscribers 1000 --rate 100 --duration "$SECS" --settle 6
