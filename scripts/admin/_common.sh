# shellcheck shell=bash
# Shared by the admin scripts (sourced, not run). Environment:
#   XCAPD_ADMIN             admin API base URL (default http://127.0.0.1:8081)
#   XCAPD_ADMIN_TOKEN       admin bearer token; when unset, read from XCAPD_ADMIN_TOKEN_FILE
#   XCAPD_ADMIN_TOKEN_FILE  default ./data/admin-token (the token the server generates when
#                           admin.token and admin.token_file are empty)
# The token goes to curl through a file descriptor, never on its command line.

XCAPD_ADMIN="${XCAPD_ADMIN:-http://127.0.0.1:8081}"
XCAPD_ADMIN="${XCAPD_ADMIN%/}"

die() {
  printf '%s: %s\n' "$(basename "$0")" "$*" >&2
  exit 2
}

admin_token() {
  if [[ -n "${XCAPD_ADMIN_TOKEN:-}" ]]; then
    printf '%s' "$XCAPD_ADMIN_TOKEN"
    return
  fi
  local file="${XCAPD_ADMIN_TOKEN_FILE:-./data/admin-token}"
  [[ -r "$file" ]] || die "set XCAPD_ADMIN_TOKEN (or XCAPD_ADMIN_TOKEN_FILE; $file is not readable)"
  tr -d ' \t\r\n' <"$file"
}

# Percent-encodes one path segment (everything but RFC 3986 pchar characters).
urlencode() {
  local s="$1" out="" c i
  local LC_ALL=C
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in
      [A-Za-z0-9._~:@!\$\&\'\(\)\*+,\;=-]) out+="$c" ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

# A JSON string literal for $1.
json_string() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"
  s="${s//$'\r'/\\r}"
  s="${s//$'\t'/\\t}"
  printf '"%s"' "$s"
}

# A password argument; "-" reads one line from standard input (keeps it out of `ps`).
password_arg() {
  local p="$1"
  if [[ "$p" == "-" ]]; then
    IFS= read -r p || true
  fi
  [[ -n "$p" ]] || die "empty password"
  printf '%s' "$p"
}

# admin_curl METHOD PATH [curl options...]: prints the response body; exits non-zero on
# HTTP errors (the error body is printed too).
admin_curl() {
  local method="$1" path="$2"
  shift 2
  local token
  token="$(admin_token)"
  curl -sS --fail-with-body -X "$method" \
    -H @<(printf 'Authorization: Bearer %s\n' "$token") \
    "$@" "$XCAPD_ADMIN$path"
}

# admin_json METHOD PATH JSON: sends JSON from standard input (not on curl's command line).
admin_json() {
  local method="$1" path="$2" body="$3"
  printf '%s' "$body" | admin_curl "$method" "$path" \
    -H 'Content-Type: application/json' --data-binary @-
}
