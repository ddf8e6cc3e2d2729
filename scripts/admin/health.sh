#!/usr/bin/env bash
# Liveness and readiness (no token needed): health.sh   -> "ok" and "ready", or non-zero exit
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -eq 0 ]] || die "usage: health.sh"
curl -sS --fail-with-body "$XCAPD_ADMIN/health"
curl -sS --fail-with-body "$XCAPD_ADMIN/ready"
