#!/usr/bin/env bash
# Documentation that is generated from code, or names code, must match it.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/lib.sh"

config_doc_matches() {
  diff <("$BIN_DIR/diaryctl" config) <(sed -n '/^| variable/,/^$/p' "$top/docs/configuration.md" | sed '/^$/d')
}

readme_targets_exist() {
  local t
  for t in $(grep -o -E '(^|`)make [a-z-]+' "$top/README.md" | awk '{print $2}' | sort -u); do
    grep -qE "^$t:" "$top/Makefile" || { echo "README names make $t"; return 1; }
  done
}

compose_valid() {
  command -v docker-compose >/dev/null || return 0
  (cd "$top" && DIARY_TOKEN_KEY=x POSTGRES_PASSWORD=x REPLICATION_PASSWORD=x docker-compose config -q)
}

check "docs/configuration.md lists exactly the settings of diaryctl config" config_doc_matches
check "every make target the README names exists" readme_targets_exist
check "docker-compose.yml is valid" compose_valid
finish docs
