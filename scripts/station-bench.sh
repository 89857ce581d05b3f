#!/usr/bin/env bash
# Figures for the end-of-line station (hil station) on simulated slots (hil sim --feed):
#  1. DUTs per hour with SLOTS (default 16) slots at BAUD (default 115200), SoftDAK, the plan
#     PLAN (default: provision, verify, reboot), DUTS_PER_SLOT (default 3) DUTs per slot; against
#     the slots' own bound: SLOTS x the rate of one slot working alone (the signer never waits);
#  2. the station's peak RSS (VmHWM, /usr/bin/time -v) with RSS_SLOTS (default 32) slots
#     (goal: at most 100 MB).
# The simulators run in their own process: the station's RSS and CPU are its own.
# SIGNER_YAML=FILE replaces the generated bench's top-level `signer:` section with FILE's (a
# `signer:` mapping, e.g. a virtual YubiKey's from `hil sim yubikey`), for the YubiKey figures.
set -euo pipefail
hil=$(realpath "${1:-bin/hil}")
slots=${SLOTS:-16}
per=${DUTS_PER_SLOT:-3}
baud=${BAUD:-115200}
rss_slots=${RSS_SLOTS:-32}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
plan=${PLAN:-$work/plan.yaml}
if [ -z "${PLAN:-}" ]; then
  cat >"$plan" <<'YAML'
name: station-bench
dut_id: {command: serial_number, regexp: '^(\S+)'}
release: power_off
phases:
  - type: provision
  - type: verify
  - type: reboot
YAML
fi

start_sim() { # dir n
  "$hil" sim --dir "$1" --n "$2" --feed "$per" --baud "$baud" --insert-delay 200ms --remove-grace 500ms >"$1.log" 2>&1 &
  for _ in $(seq 600); do grep -q '^feeding' "$1.log" 2>/dev/null && { use_signer "$1/bench.yaml"; return 0; }; sleep 0.1; done
  cat "$1.log"; return 1
}

use_signer() { # bench file: its signer section replaced by $SIGNER_YAML's
  [ -n "${SIGNER_YAML:-}" ] || return 0
  awk -v repl="$SIGNER_YAML" '
    /^signer:/ { while ((getline line < repl) > 0) print line; skip = 1; next }
    skip && /^[^ #]/ { skip = 0 }
    !skip' "$1" >"$1.tmp" && mv "$1.tmp" "$1"
}

run_station() { # dir slots -> seconds on stdout; the station's /usr/bin/time -v in dir.time
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -v -o "$1.time" "$hil" station --bench "$1/bench.yaml" --plan "$plan" --max-duts $(($2 * per)) \
    --display lines --probe-every 200ms --probe-timeout 1s >"$1.station.log" 2>&1
  t1=$(date +%s%N)
  grep -q "$(($2 * per)) DUT(s): $(($2 * per)) PASS" "$1.station.log" || { echo "not every DUT passed:"; tail -5 "$1.station.log"; } >&2
  echo "scale=3; ($t1 - $t0) / 1000000000" | bc
}

echo "== one slot alone, $per DUTs at $baud baud (the slot's own rate)"
start_sim "$work/one" 1
one=$(run_station "$work/one" 1)
one_rate=$(echo "scale=1; $per * 3600 / $one" | bc)
echo "   ${one}s: $one_rate DUTs/h per slot"

echo "== $slots slots, $((slots * per)) DUTs at $baud baud, SoftDAK"
start_sim "$work/many" "$slots"
many=$(run_station "$work/many" "$slots")
rate=$(echo "scale=1; $slots * $per * 3600 / $many" | bc)
bound=$(echo "scale=1; $slots * $one_rate" | bc)
echo "   ${many}s: $rate DUTs/h; the slots' own bound $bound DUTs/h ($(echo "scale=1; 100 * $rate / $bound" | bc)%)"

echo "== peak RSS of the station with $rss_slots slots ($((rss_slots * per)) DUTs)"
start_sim "$work/rss" "$rss_slots"
t=$(run_station "$work/rss" "$rss_slots")
kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/rss.time")
echo "   ${t}s; peak RSS $((kb / 1024)) MB (goal: at most 100 MB)"
