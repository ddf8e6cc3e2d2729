#!/usr/bin/env bash
# A scratch PostgreSQL cluster on loopback for the tests (issue #15): its own data directory,
# port and socket directory, trust authentication on 127.0.0.1 only, nothing shared with a
# system cluster. initdb refuses root, so as root the cluster belongs to the `postgres` user.
#
#   scripts/pg-scratch.sh start DIR PORT   prints the URL to use (postgres://xcapd@127.0.0.1:PORT/xcapd);
#                                          a cluster already made in DIR is started again
#   scripts/pg-scratch.sh stop DIR
#   scripts/pg-scratch.sh crash DIR        stops it the way a crash would (immediate: no checkpoint)
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}

bin=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bin=$d; done
[ -n "$bin" ] || bin=$(dirname "$(command -v pg_ctl)")
as_owner() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  port=${3:?port}
  fresh=""
  if [ ! -d "$dir/data" ]; then
    mkdir -p "$dir"
    if [ "$(id -u)" = "0" ]; then chown postgres: "$dir"; fi
    as_owner "$bin/initdb" -D "$dir/data" -U xcapd -A trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1
    fresh=1
  fi
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 ${PG_SCRATCH_OPTIONS:-}" start >/dev/null
  if [ -n "$fresh" ]; then as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U xcapd xcapd; fi
  echo "postgres://xcapd@127.0.0.1:$port/xcapd"
  ;;
stop)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  ;;
crash)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  ;;
*)
  echo "usage: $0 start DIR PORT | stop DIR | crash DIR" >&2
  exit 2
  ;;
esac
