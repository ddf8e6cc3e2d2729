#!/usr/bin/env bash
# Checks the XSDs in schemas/ and the XML fixtures in tests/fixtures/ with xmllint,
# without network access (--nonet):
#   1. every schemas/*.xsd is well-formed, has no DOCTYPE, and every xs:import /
#      xs:include / xs:redefine schemaLocation is the bare name of a file in schemas/;
#   2. every schemas/*.xsd compiles on its own (libxml2);
#   3. for each application usage (fixture directory) below, every valid-*.xml validates
#      and every invalid-*.xml is well-formed but fails schema validation, against the main
#      schema of that usage; each directory holds at least 2 of each.
# Exits non-zero on any surprise. Needs xmllint (Debian: libxml2-utils).
set -u

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
schemas="$root/schemas"
fixtures="$root/tests/fixtures"

# fixture directory (AUID, or formats/<name> for non-AUID bodies) -> main schema
mains=(
  "resource-lists=resource-lists.xsd"
  "rls-services=rls-services.xsd"
  "pres-rules=pres-rules-app.xsd"
  "org.openmobilealliance.pres-rules=oma-pres-rules-app.xsd"
  "pidf-manipulation=pidf.xsd"
  "xcap-caps=xcap-caps.xsd"
  "org.openmobilealliance.xcap-directory=xcap-directory.xsd"
  "org.example.notes=notes.xsd"
  "org.openmobilealliance.group-usage-list=resource-lists.xsd"
  "org.openmobilealliance.user-profile=user-profile.xsd"
  "org.openmobilealliance.pres-content=pres-content.xsd"
  "org.openmobilealliance.groups=groups-app.xsd"
  "org.openmobilealliance.conv-history=history-list.xsd"
  "org.openmobilealliance.deferred-list=history-list.xsd"
  "im-rules=im-rules-app.xsd"
  "formats/xcap-error=xcap-error.xsd"
  "formats/xcap-diff=xcap-diff.xsd"
)

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

if ! command -v xmllint >/dev/null 2>&1; then
  echo "xmllint not found (apt-get install -y libxml2-utils)" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '<?xml version="1.0"?>\n<xcapd-schema-compile-probe/>\n' >"$work/probe.xml"

shopt -s nullglob

# 1 + 2: each schema document.
for xsd in "$schemas"/*.xsd; do
  name="$(basename "$xsd")"
  if ! xmllint --nonet --noout "$xsd" 2>"$work/err"; then
    fail "$name is not well-formed: $(head -3 "$work/err")"
    continue
  fi
  if grep -q '<!DOCTYPE' "$xsd"; then
    fail "$name has a DOCTYPE (entities must be expanded)"
  fi
  # Every schemaLocation must be a bare file name present in schemas/.
  while IFS= read -r loc; do
    case "$loc" in
      */* | *:* | *\\* | "") fail "$name: schemaLocation \"$loc\" is not a bare local file name" ;;
      *) [ -f "$schemas/$loc" ] || fail "$name: schemaLocation \"$loc\" not found in schemas/" ;;
    esac
  done < <(xmllint --nonet --xpath \
    '//*[local-name()="import" or local-name()="include" or local-name()="redefine"]/@schemaLocation' \
    "$xsd" 2>/dev/null | grep -o 'schemaLocation="[^"]*"' | sed 's/^schemaLocation="//; s/"$//')
  # An import without schemaLocation would make libxml2 look elsewhere.
  n_imports="$(xmllint --nonet --xpath 'count(//*[local-name()="import"])' "$xsd" 2>/dev/null)"
  n_located="$(xmllint --nonet --xpath 'count(//*[local-name()="import"][@schemaLocation])' "$xsd" 2>/dev/null)"
  [ "$n_imports" = "$n_located" ] || fail "$name: an xs:import has no schemaLocation"
  # Compile: validating a probe document fails (rc 3), but compilation errors give rc 5.
  (cd "$schemas" && xmllint --nonet --noout --schema "$name" "$work/probe.xml") >/dev/null 2>"$work/err"
  rc=$?
  if [ "$rc" -ne 3 ] || grep -qiE 'failed to compile|parser error|warning|skipping import' "$work/err"; then
    fail "$name does not compile cleanly (rc $rc): $(grep -v probe "$work/err" | head -5)"
  fi
done

# 3: fixtures against main schemas.
mapped_dirs=()
for pair in "${mains[@]}"; do
  dir="${pair%%=*}"
  main="${pair#*=}"
  mapped_dirs+=("$dir")
  before=$failures
  if [ ! -f "$schemas/$main" ]; then fail "$dir: main schema $main missing"; continue; fi
  if [ ! -d "$fixtures/$dir" ]; then fail "$dir: fixture directory missing"; continue; fi
  valid=("$fixtures/$dir"/valid-*.xml)
  invalid=("$fixtures/$dir"/invalid-*.xml)
  [ "${#valid[@]}" -ge 2 ] || fail "$dir: fewer than 2 valid-*.xml fixtures"
  [ "${#invalid[@]}" -ge 2 ] || fail "$dir: fewer than 2 invalid-*.xml fixtures"
  for f in "${valid[@]}"; do
    if ! (cd "$schemas" && xmllint --nonet --noout --schema "$main" "$f") >/dev/null 2>"$work/err"; then
      fail "$dir/$(basename "$f") should validate against $main: $(head -3 "$work/err")"
    fi
  done
  for f in "${invalid[@]}"; do
    if ! xmllint --nonet --noout "$f" 2>"$work/err"; then
      fail "$dir/$(basename "$f") must be well-formed (a schema violation, not a parse error): $(head -2 "$work/err")"
      continue
    fi
    (cd "$schemas" && xmllint --nonet --noout --schema "$main" "$f") >/dev/null 2>"$work/err"
    rc=$?
    if [ "$rc" -ne 3 ]; then
      fail "$dir/$(basename "$f") should fail validation against $main (xmllint rc $rc, want 3)"
    fi
  done
  if [ "$failures" -eq "$before" ]; then
    echo "ok  $dir -> $main (${#valid[@]} valid, ${#invalid[@]} invalid)"
  fi
done

# Every fixture directory must have a main schema.
while IFS= read -r d; do
  rel="${d#"$fixtures"/}"
  known=0
  for m in "${mapped_dirs[@]}"; do [ "$m" = "$rel" ] && known=1; done
  [ "$known" -eq 1 ] || fail "fixture directory $rel has no main schema in check-schemas.sh"
done < <(find "$fixtures" -name '*.xml' -printf '%h\n' | sort -u)

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "all schemas and fixtures OK"
