#!/usr/bin/env bash
# Creates (or replaces) a user: user-add.sh XUI PASSWORD [ROLE] [REALM]
# PASSWORD "-" reads it from standard input. ROLE: user (default), admin or service.
# REALM defaults to the XUI's domain.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -ge 2 && $# -le 4 ]] || die "usage: user-add.sh XUI PASSWORD [ROLE] [REALM]"
xui="$1"
password="$(password_arg "$2")"
body="{\"password\":$(json_string "$password")"
if [[ -n "${3:-}" ]]; then
  body+=",\"roles\":[$(json_string "$3")]"
fi
if [[ -n "${4:-}" ]]; then
  body+=",\"realm\":$(json_string "$4")"
fi
body+="}"
admin_json PUT "/users/$(urlencode "$xui")" "$body"
