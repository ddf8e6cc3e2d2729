#!/usr/bin/env bash
# Sets a user's password: user-passwd.sh XUI PASSWORD   (PASSWORD "-" reads standard input)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -eq 2 ]] || die "usage: user-passwd.sh XUI PASSWORD"
password="$(password_arg "$2")"
admin_json POST "/users/$(urlencode "$1")/password" "{\"password\":$(json_string "$password")}"
