#!/usr/bin/env bash
# Reproducible load benchmark for the XDMS (issue #2 scope 10). Starts a release xcapd on a
# temporary data directory (sled, durable writes), seeds documents, drives each scenario with
# benches/load.rs (xcapd-load), measures nginx serving the same bytes as the ceiling, and the
# server's RSS after 10,000 users × 3 documents. Loopback only; every run is bounded in time.
#
#   scripts/bench.sh [seconds-per-scenario]        (default 10)
set -euo pipefail
export XCAPD_SIP=127.0.0.1:0   # several servers run at once: each picks its own SIP port
cd "$(dirname "$0")/.."
SECS=${1:-10}
PORT=${BENCH_PORT:-18080}
NGINX_PORT=${BENCH_NGINX_PORT:-18081}
WORK=$(mktemp -d /tmp/xcapd-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers (www-data) read the ceiling files from here
cargo build --release --bin xcapd --bin xcapd-load --bin xcapd-bench-decide >/dev/null
BIN=target/release/xcapd
LOAD=target/release/xcapd-load
X=http://127.0.0.1:$PORT/xcap-root
export XCAPD_ADMIN_LISTEN=127.0.0.1:0   # several servers run at once

cleanup() {
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

XCAPD_AUTH=none XCAPD_LOG=warn $BIN serve --http 127.0.0.1:$PORT --data "$WORK/data" &
SRV=$!
for _ in $(seq 1 100); do curl -sf $X/xcap-caps/global/index >/dev/null && break; sleep 0.1; done

list_doc() { # $1 = entries
  python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
print('<?xml version="1.0" encoding="UTF-8"?>')
print('<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">')
print('  <list name="friends">')
for i in range(n):
    print(f'    <entry uri="sip:user{i}@example.com"><display-name>User {i}</display-name></entry>')
print('  </list>')
print('</resource-lists>')
PY
}
list_doc 100 > "$WORK/l100.xml"
list_doc 10000 > "$WORK/l10k.xml"
RL=application/resource-lists+xml
curl -sf -X PUT -H "Content-Type: $RL" --data-binary @"$WORK/l100.xml" $X/resource-lists/users/sip:small@example.com/index >/dev/null
curl -sf -X PUT -H "Content-Type: $RL" --data-binary @"$WORK/l10k.xml" $X/resource-lists/users/sip:big@example.com/index >/dev/null

run() { # name, load args...
  local name=$1; shift
  printf '%-58s ' "$name"
  $LOAD --duration "$SECS" "$@"
}

SEL='~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22sip:user50@example.com%22%5D'
echo "== xcapd $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, ${SECS}s per scenario"
run "GET document, 100 entries (4 conns)"          --connections 4 --url $X/resource-lists/users/sip:small@example.com/index
run "GET document, 100 entries (16 conns)"         --connections 16 --url $X/resource-lists/users/sip:small@example.com/index
run "GET document, 10,000 entries (4 conns)"       --connections 4 --url $X/resource-lists/users/sip:big@example.com/index
run "GET element by attribute, 100 entries"        --connections 4 --url "$X/resource-lists/users/sip:small@example.com/index/$SEL"
run "GET element by attribute, 10,000 entries"     --connections 4 --url "$X/resource-lists/users/sip:big@example.com/index/$SEL"
run "PUT document, 100 entries, durable (4 clients)" --connections 4 --method PUT --content-type $RL --body-file "$WORK/l100.xml" --url "$X/resource-lists/users/sip:writer{c}@example.com/index"
run "PUT document, 10,000 entries, durable (4 clients)" --connections 4 --method PUT --content-type $RL --body-file "$WORK/l10k.xml" --url "$X/resource-lists/users/sip:bigwriter{c}@example.com/index"
run "PUT element into 100-entry list (1 client)"   --connections 1 --method PUT --content-type application/xcap-el+xml --body '<entry uri="sip:new{n}@example.com"/>' --url "$X/resource-lists/users/sip:small@example.com/index/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22sip:new{n}@example.com%22%5D"
run "PUT element into 10,000-entry list (1 client)" --connections 1 --method PUT --content-type application/xcap-el+xml --body '<entry uri="sip:new{n}@example.com"/>' --url "$X/resource-lists/users/sip:big@example.com/index/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22sip:new{n}@example.com%22%5D"

# Authenticated GET (issue #3): the same document through the authenticating front, with
# Digest nonce reuse and with a JWT, compared with the unauthenticated rate in this run.
AUTH_PORT=$((PORT + 2))
XA=http://127.0.0.1:$AUTH_PORT/xcap-root
head -c 48 /dev/urandom | base64 | tr -d '\n=+/' > "$WORK/jwt.key"
cat > "$WORK/auth.toml" <<TOML
[server]
auth = "required"
[auth]
jwt_hs256_secret_file = "$WORK/jwt.key"
throttle_max_failures = 0
TOML
XCAPD_PASSWORD=secret $BIN user add sip:small@example.com --data "$WORK/auth-data" >/dev/null
XCAPD_LOG=warn $BIN serve --config "$WORK/auth.toml" --http 127.0.0.1:$AUTH_PORT --data "$WORK/auth-data" &
AUTH_SRV=$!
for _ in $(seq 1 100); do curl -s -o /dev/null $XA/xcap-caps/global/index && break; sleep 0.1; done
curl -sf --digest -u small@example.com:secret -X PUT -H "Content-Type: $RL" --data-binary @"$WORK/l100.xml" $XA/resource-lists/users/sip:small@example.com/index >/dev/null
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
NOW=$(date +%s)
JH=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
JP=$(printf '{"sub":"sip:small@example.com","exp":%d}' $((NOW + 3600)) | b64url)
JS=$(printf '%s.%s' "$JH" "$JP" | openssl dgst -sha256 -hmac "$(cat "$WORK/jwt.key")" -binary | b64url)
JWT="$JH.$JP.$JS"
run "GET document, 100 entries, no auth (4 conns)"      --connections 4 --url $X/resource-lists/users/sip:small@example.com/index
run "GET document, 100 entries, Digest reuse (4 conns)" --connections 4 --digest small@example.com:secret --url $XA/resource-lists/users/sip:small@example.com/index
run "GET document, 100 entries, JWT bearer (4 conns)"   --connections 4 --header "Authorization: Bearer $JWT" --url $XA/resource-lists/users/sip:small@example.com/index
kill $AUTH_SRV

# Proxy -> remote XDMS (issue #3): the same GET sent directly to a remote XDMS (identity
# asserted from a trusted peer) and through a proxy that authenticates a JWT and forwards.
RPORT=$((PORT + 4)); PPORT=$((PORT + 5))
printf '[server]\nauth = "required"\n[auth]\ntrusted_peers = ["127.0.0.1/32"]\n' > "$WORK/remote.toml"
cat > "$WORK/proxy.toml" <<TOML
[server]
auth = "required"
[auth]
jwt_hs256_secret_file = "$WORK/jwt.key"
# The proxy stores no users here: its tokens come from an issuer that does.
jwt_require_user = false
[[routing.targets]]
name = "shared"
url = "http://127.0.0.1:$RPORT/xcap-root"
auids = ["resource-lists"]
trusted_hop = true
TOML
XCAPD_LOG=warn $BIN serve --config "$WORK/remote.toml" --http 127.0.0.1:$RPORT --data "$WORK/remote-data" &
REMOTE=$!
XCAPD_LOG=warn $BIN serve --config "$WORK/proxy.toml" --http 127.0.0.1:$PPORT --data "$WORK/proxy-data" &
PROXY=$!
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:$RPORT/xcap-root/ && curl -s -o /dev/null http://127.0.0.1:$PPORT/xcap-root/ && break; sleep 0.1; done
curl -sf -X PUT -H "X-XCAP-Asserted-Identity: <sip:small@example.com>" -H "Content-Type: $RL" --data-binary @"$WORK/l100.xml" http://127.0.0.1:$RPORT/xcap-root/resource-lists/users/sip:small@example.com/index >/dev/null
run "GET document, 100 entries, remote XDMS direct (4 conns)" --connections 4 --header "X-XCAP-Asserted-Identity: <sip:small@example.com>" --url http://127.0.0.1:$RPORT/xcap-root/resource-lists/users/sip:small@example.com/index
run "GET document, 100 entries, via proxy -> remote (4 conns)" --connections 4 --header "Authorization: Bearer $JWT" --url http://127.0.0.1:$PPORT/xcap-root/resource-lists/users/sip:small@example.com/index
run "same, 1 conn: remote direct"                              --connections 1 --header "X-XCAP-Asserted-Identity: <sip:small@example.com>" --url http://127.0.0.1:$RPORT/xcap-root/resource-lists/users/sip:small@example.com/index
run "same, 1 conn: via proxy -> remote"                        --connections 1 --header "Authorization: Bearer $JWT" --url http://127.0.0.1:$PPORT/xcap-root/resource-lists/users/sip:small@example.com/index
kill $REMOTE $PROXY

# IM policy decisions (issue #4): 50 rules, two 1,000-entry external lists.
target/release/xcapd-bench-decide $((SECS + 5)) > "$WORK/decide.out" &
DEC=$!
for _ in $(seq 1 200); do grep -q READY "$WORK/decide.out" 2>/dev/null && break; sleep 0.1; done
grep "in-process" "$WORK/decide.out"
DURL=$(awk '/READY/{print $2}' "$WORK/decide.out")
run "HTTP decide, 50 rules + 2x1,000-entry lists (4 conns)" --connections 4 --method POST \
  --header "X-XCAP-Asserted-Identity: <sip:im@example.com>" --content-type application/json \
  --body '{"recipient":"sip:bob@example.com","sender":"sip:granted{n}@example.com","media":"pager"}' --url "$DURL"
wait $DEC || true

# Ceiling: nginx serving the same 100-entry bytes as a static file.
if command -v nginx >/dev/null 2>&1; then
  mkdir -p "$WORK/www"
  cp "$WORK/l100.xml" "$WORK/www/l100.xml"
  cp "$WORK/l10k.xml" "$WORK/www/l10k.xml"
  cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp; fastcgi_temp_path $WORK/tmp; uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;
  server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; }
}
NGX
  mkdir -p "$WORK/tmp"
  nginx -c "$WORK/nginx.conf"
  sleep 0.3
  run "CEILING nginx static GET, 100 entries (4 conns)"  --connections 4 --url http://127.0.0.1:$NGINX_PORT/l100.xml
  run "CEILING nginx static GET, 10,000 entries (4 conns)" --connections 4 --url http://127.0.0.1:$NGINX_PORT/l10k.xml
else
  echo "nginx not installed: no ceiling measured (apt-get install nginx-light)"
fi

# RSS after 10,000 users x 3 documents, on a fresh server (the target's scenario).
kill "$SRV"; wait "$SRV" 2>/dev/null || true
XCAPD_AUTH=none XCAPD_LOG=warn $BIN serve --http 127.0.0.1:$PORT --data "$WORK/rss-data" &
SRV=$!
for _ in $(seq 1 100); do curl -sf $X/xcap-caps/global/index >/dev/null && break; sleep 0.1; done
echo "RSS of a fresh server: $(awk '/VmRSS/{print $2, $3}' /proc/$SRV/status)"
printf '%-58s ' "seed 10,000 users x 3 documents (4 clients)"
$LOAD --connections 4 --requests 10000 --method PUT --content-type $RL \
  --body '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="l"><entry uri="sip:x{n}@example.com"/></list></resource-lists>' \
  --url "$X/resource-lists/users/sip:u{n}@example.com/index"
$LOAD --connections 4 --requests 10000 --method PUT --content-type application/auth-policy+xml \
  --body '<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"><cr:rule id="r{n}"><cr:conditions/><cr:actions/></cr:rule></cr:ruleset>' \
  --url "$X/pres-rules/users/sip:u{n}@example.com/index" >/dev/null
$LOAD --connections 4 --requests 10000 --method PUT --content-type application/pidf+xml \
  --body '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:u{n}@example.com"><tuple id="t{n}"><status><basic>open</basic></status></tuple></presence>' \
  --url "$X/pidf-manipulation/users/sip:u{n}@example.com/index" >/dev/null
echo "RSS after seeding: $(awk '/VmRSS/{print $2, $3}' /proc/$SRV/status)"
