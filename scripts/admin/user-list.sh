#!/usr/bin/env bash
# Lists users as JSON [{xui, realm, roles}]: user-list.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -eq 0 ]] || die "usage: user-list.sh"
admin_curl GET /users
