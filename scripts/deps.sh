#!/usr/bin/env bash
# Installs the Debian packages the build, the local stack and the tests need, when missing.
# Idempotent and quiet when everything is there. Needs root (apt-get) only when installing.
set -euo pipefail

pkgs=(build-essential pkg-config librdkafka-dev libpq-dev libevent-dev libjansson-dev
      libsodium-dev libcyaml-dev libcmocka-dev libcrypt-dev postgresql-15 postgresql-client-15
      kcat curl python3 python3-confluent-kafka python3-yaml jq clang-format)

missing=()
# Node (for the kafkajs client test) usually comes with the machine; else Debian's.
command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages and not root; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
