#!/usr/bin/env bash
# Installs the Debian packages hilbench's simulators and tests use, when they are missing, and
# starts pcscd (the smart-card daemon the virtual YubiKey plugs into through vpcd).
set -euo pipefail
need=()
command -v busybox >/dev/null || need+=(busybox)
command -v openssl >/dev/null || need+=(openssl)
command -v git >/dev/null || need+=(git)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v gcc >/dev/null || need+=(gcc)
command -v pcscd >/dev/null || need+=(pcscd)
command -v yubico-piv-tool >/dev/null || need+=(yubico-piv-tool)
[ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] || need+=(vsmartcard-vpcd)
pkg-config --exists libpcsclite 2>/dev/null || need+=(libpcsclite-dev)
pkg-config --exists libusb-1.0 2>/dev/null || need+=(libusb-1.0-0-dev)
command -v sb >/dev/null || need+=(lrzsz)
command -v umockdev-run >/dev/null || need+=(umockdev)
command -v dfu-suffix >/dev/null || need+=(dfu-util)
# The ledger tests: initdb/pg_ctl for a throwaway cluster of their own (no system service is
# started or used), psql and sqlite3 as independent readers of the ledgers.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v sqlite3 >/dev/null || need+=(sqlite3)
# Independent judges of the factory outputs and the station's web page: a Data Matrix reader, a
# Code 128 reader, a JSON Schema validator, and a headless browser.
command -v dmtxread >/dev/null || need+=(dmtx-utils)
command -v zbarimg >/dev/null || need+=(zbar-tools)
python3 -c 'import jsonschema' 2>/dev/null || need+=(python3-jsonschema)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # A pcscd started before vpcd was installed has not loaded its reader driver.
  case " ${need[*]} " in *" vsmartcard-vpcd "*) pkill -x pcscd 2>/dev/null || true; sleep 0.5 ;; esac
fi
if ! pgrep -x pcscd >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    pcscd
    for _ in $(seq 50); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.1; done
  else
    echo "pcscd is not running; start it with: sudo systemctl start pcscd.socket (or: sudo pcscd)" >&2
    exit 1
  fi
fi
