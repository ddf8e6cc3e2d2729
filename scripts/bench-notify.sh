#!/usr/bin/env bash
# The xcap-diff notifier's benchmarks (issue #13; BENCHMARKS.md "SIP notifier"): a release xcapd
# on sled in a temporary directory (development mode), driven by benches/notify.rs
# (xcapd-bench-notify) over UDP and benches/load.rs (xcapd-load) over HTTP. Loopback only.
#
#   scripts/bench-notify.sh [subscribers] [seconds]      (defaults: 10000, 10)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
SECS=${2:-10}
PORT=${BENCH_PORT:-18480}
SIP=${BENCH_SIP_PORT:-15460}
WORK=$(mktemp -d /tmp/xcapd-bench-notify.XXXXXX)
cargo build --release --bin xcapd --bin xcapd-load --bin xcapd-bench-notify >/dev/null
BIN=target/release/xcapd
LOAD=target/release/xcapd-load
NOTIFY=target/release/xcapd-bench-notify
X=http://127.0.0.1:$PORT/xcap-root
# One document is watched by up to 1,000 subscriptions of its owner in the fan-out run.
printf '[sip]\nmax_subscriptions_per_user = 1000\n' > "$WORK/xcapd.toml"

cleanup() {
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
  [ -n "${HOLD:-}" ] && kill "$HOLD" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start() { # a fresh server on a fresh data directory
  [ -n "${SRV:-}" ] && { kill "$SRV"; wait "$SRV" 2>/dev/null || true; }
  rm -rf "$WORK/data"
  XCAPD_AUTH=none XCAPD_LOG=warn XCAPD_ADMIN_LISTEN= $BIN serve --http 127.0.0.1:$PORT \
    --sip 127.0.0.1:$SIP --data "$WORK/data" --config "$WORK/xcapd.toml" &
  SRV=$!
  for _ in $(seq 1 100); do curl -sf $X/xcap-caps/global/index >/dev/null && break; sleep 0.1; done
}

list_doc() {
  printf '<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="friends">'
  for i in $(seq 1 100); do printf '<entry uri="sip:user%s@example.com"/>' "$i"; done
  printf '</list></resource-lists>\n'
}
list_doc > "$WORK/l100.xml"
# The same list with its first entry changing on every PUT ({n}): a whole-document PUT a
# subscription watches is diffed into a patch, so this measures that cost too.
sed 's/sip:user1@/sip:changed{n}@/' "$WORK/l100.xml" > "$WORK/l100n.xml"
RL=application/resource-lists+xml

echo "== xcapd $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, sled, notify_interval 5 s"

echo "-- $N subscriptions (one per user document), 1,000 writes/s round-robin for ${SECS}s"
start
$NOTIFY --sip 127.0.0.1:$SIP --http $X --subscribers "$N" --rate 1000 --duration "$SECS" --pid "$SRV"

echo "-- one document watched by 1,000 subscriptions"
start
$NOTIFY --sip 127.0.0.1:$SIP --http $X --one-doc 1000 --settle 6

echo "-- durable PUT document (100 entries, 4 clients, each on a watched document), without and with $N subscriptions (same $N documents stored in both)"
start
$NOTIFY --sip 127.0.0.1:$SIP --http $X --subscribers "$N" --seed-only
for c in 0 1 2 3; do
  curl -sf -X PUT -H "Content-Type: $RL" --data-binary @"$WORK/l100.xml" "$X/resource-lists/users/sip:u$c@example.com/index" >/dev/null
done
printf '%-40s ' "no subscriptions"
$LOAD --connections 4 --duration "$SECS" --method PUT --content-type $RL --body-file "$WORK/l100.xml" --url "$X/resource-lists/users/sip:u{c}@example.com/index"
printf '%-40s ' "no subscriptions, changing body"
$LOAD --connections 4 --duration "$SECS" --method PUT --content-type $RL --body-file "$WORK/l100n.xml" --url "$X/resource-lists/users/sip:u{c}@example.com/index"
$NOTIFY --sip 127.0.0.1:$SIP --http $X --subscribers "$N" --settle 35 --hold $((2 * SECS + 30)) --pid "$SRV" > "$WORK/hold.log" &
HOLD=$!
until grep -q READY "$WORK/hold.log" 2>/dev/null; do sleep 0.5; done
printf '%-40s ' "$N subscriptions"
$LOAD --connections 4 --duration "$SECS" --method PUT --content-type $RL --body-file "$WORK/l100.xml" --url "$X/resource-lists/users/sip:u{c}@example.com/index"
printf '%-40s ' "$N subscriptions, changing body"
$LOAD --connections 4 --duration "$SECS" --method PUT --content-type $RL --body-file "$WORK/l100n.xml" --url "$X/resource-lists/users/sip:u{c}@example.com/index"
kill $HOLD 2>/dev/null || true
