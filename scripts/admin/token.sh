#!/usr/bin/env bash
# Issues a bearer JWT for a user: token.sh XUI [TTL_SECS]   (prints {token, expires_at, ...})
# Needs auth.jwt_hs256_secret_file in the server configuration (501 otherwise).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 1 && $# -le 2 ]] || die "usage: token.sh XUI [TTL_SECS]"
body="{}"
if [[ -n "${2:-}" ]]; then
  [[ "$2" =~ ^[0-9]+$ ]] || die "TTL_SECS must be a number of seconds"
  body="{\"ttl_secs\":$2}"
fi
admin_json POST "/users/$(urlencode "$1")/token" "$body"
