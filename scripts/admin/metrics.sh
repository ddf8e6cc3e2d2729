#!/usr/bin/env bash
# Prometheus metrics in text format: metrics.sh [GREP_PATTERN]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
[[ $# -le 1 ]] || die "usage: metrics.sh [GREP_PATTERN]"
if [[ $# -eq 1 ]]; then
  out="$(admin_curl GET /metrics)"
  grep -E -- "$1" <<<"$out"
else
  admin_curl GET /metrics
fi
