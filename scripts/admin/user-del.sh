#!/usr/bin/env bash
# Deletes a user's credentials (its documents stay): user-del.sh XUI
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -eq 1 ]] || die "usage: user-del.sh XUI"
admin_curl DELETE "/users/$(urlencode "$1")"
