#!/usr/bin/env bash
# Installs the Debian packages hilbench's simulator and tests use, when they are missing.
set -euo pipefail
need=()
command -v busybox >/dev/null || need+=(busybox)
command -v openssl >/dev/null || need+=(openssl)
command -v git >/dev/null || need+=(git)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing: ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
