#!/usr/bin/env bash
# Before/after comparison of two xcapd binaries on the hot paths (issue #12 asks for
# durable PUT document, GET document and GET element, no more than 5% slower). Each round
# starts a fresh server per binary (sled, XCAPD_AUTH=none) and runs every scenario against it,
# alternating the binaries so that the machine's drift hits both alike.
#
#   scripts/bench-compare.sh OLD_BIN NEW_BIN [seconds-per-scenario] [rounds]   (default 6 3)
#   ONLY=put-document scripts/bench-compare.sh ...   runs that one scenario (more pairs per minute)
# needs target/release/xcapd-load (cargo build --release --bin xcapd-load).
set -euo pipefail
export XCAPD_SIP=127.0.0.1:0   # several servers run at once: each picks its own SIP port
cd "$(dirname "$0")/.."
OLD=$1; NEW=$2; SECS=${3:-6}; ROUNDS=${4:-3}
LOAD=${LOAD:-target/release/xcapd-load}
PORT=${BENCH_PORT:-18090}
WORK=$(mktemp -d /tmp/xcapd-compare.XXXXXX)
X=http://127.0.0.1:$PORT/xcap-root
RL=application/resource-lists+xml
export XCAPD_ADMIN_LISTEN=""
cleanup() { [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

python3 scripts/resource-list.py 100 --display-names > "$WORK/l100.xml"
SEL='~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22sip:user50@example.com%22%5D'
NEWSEL='~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22sip:new{n}@example.com%22%5D'

ONLY=${ONLY:-}
wanted() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

one() { # label binary
  local label=$1 bin=$2 data
  data=$(mktemp -d "$WORK/data.XXXX")
  XCAPD_AUTH=none XCAPD_LOG=warn "$bin" serve --http 127.0.0.1:$PORT --data "$data" &
  SRV=$!
  for _ in $(seq 1 100); do curl -sf $X/xcap-caps/global/index >/dev/null && break; sleep 0.1; done
  curl -sf -X PUT -H "Content-Type: $RL" --data-binary @"$WORK/l100.xml" $X/resource-lists/users/sip:small@example.com/index >/dev/null
  if wanted put-document; then
    printf '%-6s %-44s ' "$label" "PUT document, 100 entries, durable (4)"
    $LOAD --duration "$SECS" --connections 4 --method PUT --content-type $RL --body-file "$WORK/l100.xml" --url "$X/resource-lists/users/sip:writer{c}@example.com/index"
  fi
  if wanted get-document; then
    printf '%-6s %-44s ' "$label" "GET document, 100 entries (4)"
    $LOAD --duration "$SECS" --connections 4 --url $X/resource-lists/users/sip:small@example.com/index
  fi
  if wanted get-element; then
    printf '%-6s %-44s ' "$label" "GET element by attribute, 100 entries (4)"
    $LOAD --duration "$SECS" --connections 4 --url "$X/resource-lists/users/sip:small@example.com/index/$SEL"
  fi
  if wanted put-element; then
    printf '%-6s %-44s ' "$label" "PUT element into 100-entry list (1)"
    $LOAD --duration "$SECS" --connections 1 --method PUT --content-type application/xcap-el+xml --body '<entry uri="sip:new{n}@example.com"/>' --url "$X/resource-lists/users/sip:small@example.com/index/$NEWSEL"
  fi
  kill "$SRV"; wait "$SRV" 2>/dev/null || true; SRV=
  rm -rf "$data"
}

echo "== $(nproc) cores, ${SECS}s per scenario, $ROUNDS rounds; old=$OLD new=$NEW"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one old "$OLD"; one new "$NEW"; else one new "$NEW"; one old "$OLD"; fi
done
