#!/usr/bin/env bash
# Resource-bound benchmarks of issue #11, on loopback, bounded in time:
#  1. RSS while writing ~1 GB of distinct 1-4 MB documents and reading them all back, with the
#     default caches (storage.cache_capacity_mb = 32, storage.document_cache_mb = 32);
#  2. two PUTs of a document with 40,000 attributes on one element (429 KB) while another
#     user PUTs a 100-entry list in a closed loop: the PUT time and the other user's latency,
#     against that user alone.
# Pass another binary as $1 (e.g. one built from an older commit) to compare; it is started
# from the repository root so that a binary without built-in usages finds app-usages/.
#
#   scripts/bench-limits.sh [xcapd-binary] [megabytes]
set -euo pipefail
export XCAPD_SIP=127.0.0.1:0   # several servers run at once: each picks its own SIP port
cd "$(dirname "$0")/.."
cargo build --release --bin xcapd --bin xcapd-load >/dev/null
BIN=$(realpath "${1:-target/release/xcapd}")
MB=${2:-1024}
LOAD=target/release/xcapd-load
PORT=${BENCH_PORT:-18095}
X=http://127.0.0.1:$PORT/xcap-root
WORK=$(mktemp -d /tmp/xcapd-limits.XXXXXX)
trap '[ -n "${SRV:-}" ] && kill $SRV 2>/dev/null; rm -rf "$WORK"' EXIT
start() {
  rm -rf "$WORK/data"
  XCAPD_AUTH=none XCAPD_LOG=error XCAPD_ADMIN_LISTEN=127.0.0.1:0 "$BIN" serve --http 127.0.0.1:$PORT --data "$WORK/data" 2>/dev/null &
  SRV=$!
  for _ in $(seq 1 100); do curl -sf $X/xcap-caps/global/index >/dev/null && break; sleep 0.1; done
}
echo "== $BIN ($(git rev-parse --short HEAD)), $(nproc) cores"
start
python3 benches/rss_large_docs.py $SRV $PORT "$MB"
kill $SRV; wait $SRV 2>/dev/null || true

python3 - > "$WORK/l100.xml" <<'PY'
print('<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="friends">'
      + ''.join(f'<entry uri="sip:user{i}@example.com"><display-name>User {i}</display-name></entry>' for i in range(100))
      + '</list></resource-lists>')
PY
python3 -c "print('<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"l\"' + ''.join(f' a{i}=\"v\"' for i in range(40000)) + '/></resource-lists>')" > "$WORK/attrs.xml"
RL=application/resource-lists+xml
start
printf 'other user alone:      '
$LOAD --duration 4 --connections 1 --method PUT --content-type $RL --body-file "$WORK/l100.xml" --url "$X/resource-lists/users/sip:other@example.com/index"
HEAVY=()
for k in 1 2; do
  curl -s -o /dev/null -w "40,000-attribute PUT: %{http_code} in %{time_total} s\n" -X PUT -H "Content-Type: $RL" \
    --data-binary @"$WORK/attrs.xml" $X/resource-lists/users/sip:heavy$k@example.com/index &
  HEAVY+=($!)
done
sleep 0.2
printf 'other user meanwhile:  '
$LOAD --duration 8 --connections 1 --method PUT --content-type $RL --body-file "$WORK/l100.xml" --url "$X/resource-lists/users/sip:other@example.com/index"
wait "${HEAVY[@]}" || true
