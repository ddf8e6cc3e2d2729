#!/usr/bin/env bash
# The IM Server's benchmarks (issue #14; BENCHMARKS.md "IM Server"): a release xcapd on sled in
# a temporary directory (development mode), driven by benches/message.rs
# (xcapd-bench-message) over UDP; Kamailio (benches/kamailio-message.cfg) relaying the same
# MESSAGEs between the same user agents is the ceiling, in the same run. Loopback only.
#
#   scripts/bench-im.sh [seconds]      (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
PORT=${BENCH_PORT:-18490}
SIP=${BENCH_SIP_PORT:-15470}
KPORT=${BENCH_KAMAILIO_PORT:-15480}
WORK=$(mktemp -d /tmp/xcapd-bench-im.XXXXXX)
cargo build --release --bin xcapd --bin xcapd-bench-message >/dev/null
BIN=target/release/xcapd
MSG=target/release/xcapd-bench-message
X=http://127.0.0.1:$PORT/xcap-root

cleanup() {
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
  [ -n "${KAM:-}" ] && kill "$KAM" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start() { # a fresh server on a fresh data directory with config $1
  [ -n "${SRV:-}" ] && { kill "$SRV"; wait "$SRV" 2>/dev/null || true; }
  rm -rf "$WORK/data"
  printf '%b' "$1" > "$WORK/xcapd.toml"
  XCAPD_AUTH=none XCAPD_LOG=warn XCAPD_ADMIN_LISTEN= $BIN serve --http 127.0.0.1:$PORT \
    --sip 127.0.0.1:$SIP --data "$WORK/data" --config "$WORK/xcapd.toml" &
  SRV=$!
  for _ in $(seq 1 100); do curl -sf $X/xcap-caps/global/index >/dev/null && break; sleep 0.1; done
}

# A recipient's im-rules with 50 rules: 49 for other people, one allowing the sender.
rules() {
  printf '<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:iptel:xml:ns:im-rules">'
  for i in $(seq 1 49); do
    printf '<cr:rule id="r%s"><cr:conditions><cr:identity><cr:one id="sip:other%s@example.org"/></cr:identity></cr:conditions><cr:actions><im:im-handling>block</im:im-handling></cr:actions></cr:rule>' "$i" "$i"
  done
  printf '<cr:rule id="sender"><cr:conditions><cr:identity><cr:one id="sip:sender@example.com"/></cr:identity></cr:conditions><cr:actions><im:im-handling>allow</im:im-handling></cr:actions></cr:rule></cr:ruleset>'
}
rules > "$WORK/rules.xml"
put_rules() { # the 50-rule im-rules for both recipients of the online runs
  for u in u0 u1; do
    curl -sf -o /dev/null -X PUT -H 'Content-Type: application/auth-policy+xml' \
      --data-binary @"$WORK/rules.xml" "$X/im-rules/users/sip:$u@example.com/index"
  done
}

echo "== xcapd $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, sled, $(kamailio -v 2>/dev/null | head -1)"

echo "-- online delivery: 2 registered UAs, each with a 50-rule im-rules document, 64 in flight, ${SECS}s (xcapd)"
start '[im]\ncharging = true\n'
put_rules
$MSG --sip 127.0.0.1:$SIP online --recipients 2 --window 64 --duration "$SECS"
echo "-- the issue's target load: 5,000 MESSAGE/s offered (open loop), p99 (xcapd)"
$MSG --sip 127.0.0.1:$SIP online --recipients 2 --window 256 --rate 5000 --duration "$SECS"
echo "-- the first load with im.history = \"off\" (the default \"opt-in\" reads each sender's rules)"
start '[im]\ncharging = true\nhistory = "off"\n'
put_rules
$MSG --sip 127.0.0.1:$SIP online --recipients 2 --window 64 --duration "$SECS"

echo "-- the same through Kamailio (registrar + stateful relay, no policy): the ceiling"
mkdir -p "$WORK/kamailio"
sed "s/KAMAILIO_PORT/$KPORT/" benches/kamailio-message.cfg > "$WORK/kamailio/k.cfg"
kamailio -f "$WORK/kamailio/k.cfg" -DD -E -m 4096 -M 32 -Y "$WORK/kamailio" -P "$WORK/kamailio/pid" 2>/dev/null &
KAM=$!
sleep 1
$MSG --sip 127.0.0.1:$KPORT online --recipients 2 --window 64 --duration "$SECS"
$MSG --sip 127.0.0.1:$KPORT online --recipients 2 --window 256 --rate 5000 --duration "$SECS"
kill "$KAM"; wait "$KAM" 2>/dev/null || true; KAM=

echo "-- store and forward: 10,000 MESSAGEs for 1,000 offline users (policy default allow), then all register"
start '[policy]\nim_default = "allow"\n[im]\ndeferred_max_messages = 100000\n'
$MSG --sip 127.0.0.1:$SIP store --users 1000 --messages 10000 --window 64 --pid "$SRV"

echo "-- RSS: 10,000 registered users, then 100,000 messages stored for 10,000 others"
start '[policy]\nim_default = "allow"\n[im]\ndeferred_max_messages = 100000\n'
$MSG --sip 127.0.0.1:$SIP hold --users 10000 --messages 100000 --window 64 --pid "$SRV"
