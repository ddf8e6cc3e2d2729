#!/usr/bin/env bash
# Lists a user's stored documents as JSON [{auid, path, etag, size, modified}]: user-docs.sh XUI
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -eq 1 ]] || die "usage: user-docs.sh XUI"
admin_curl GET "/users/$(urlencode "$1")/documents"
