#!/usr/bin/env bash
# What `make test` needs from the system besides Python: installs the missing ones with apt when
# it may (root, apt-get present), else stops with the one command that installs them.
#   java, mvn      the local Kafka broker (jars fetched from Maven Central)
#   redis-server   the API's shared-cache tests
#   chromium       renders the API's /docs page in a test
#   curl           runs the deployment guide's commands in tests
set -euo pipefail

wanted=(java:openjdk-17-jre-headless mvn:maven redis-server:redis-server chromium:chromium curl:curl)
missing=()
for entry in "${wanted[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

command="apt-get update && apt-get install -y ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
  exit 0
fi
echo "missing system packages: ${missing[*]}" >&2
echo "install them with: sudo sh -c '$command'" >&2
exit 1
