#!/usr/bin/env bash
# Restores documents from an export into a user's home: import.sh XUI FILE   (FILE "-": stdin)
# Every document is PUT through the XDMS (validated, new ETags, change events). Prints one
# result per document; exits non-zero if any document was refused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -eq 2 ]] || die "usage: import.sh XUI FILE"
file="$2"
[[ "$file" == "-" || -r "$file" ]] || die "cannot read $file"
admin_curl POST "/users/$(urlencode "$1")/import" \
  -H 'Content-Type: application/json' --data-binary "@$file"
