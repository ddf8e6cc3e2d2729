#!/usr/bin/env bash
# Writes every document of a user as JSON to standard output: export.sh XUI > backup.json
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -eq 1 ]] || die "usage: export.sh XUI > FILE"
admin_curl GET "/users/$(urlencode "$1")/export"
