#!/usr/bin/env bash
# The nightly soak on a simulated bench: `hil sim` with 8 ACS devices and 4 ACK modules, then
# `hil soak` over both bench files: provisioning under power cuts, then SOAK_CYCLES cycles (default
# 1,000) of verify, reboot, factory reset, reflash, power cycle and power cut with 1e-4 line noise,
# the identity checked against the ledger after every step. Prints the counters and the duration;
# fails when a chain was torn or changed, a key signed twice or a ledger is inconsistent.
#   SOAK_CYCLES=20 SOAK_SEED=42 SOAK_FAULTS=power_cut,noise,reenumerate scripts/soak.sh bin/hil hil-out/soak
set -euo pipefail
hil=${1:-bin/hil}
dir=${2:-hil-out/soak}
cycles=${SOAK_CYCLES:-1000}
seed=${SOAK_SEED:-0}
faults=${SOAK_FAULTS:-power_cut,noise}
rm -rf "$dir"
mkdir -p "$dir"
start=$(date +%s)
"$hil" sim --n 8 --modules 4 --dir "$dir/sim" --boot-delay 50ms >"$dir/sim.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  grep -q '^bench file' "$dir/sim.log" && break
  kill -0 $sim 2>/dev/null || { cat "$dir/sim.log"; exit 1; }
  sleep 0.1
done
"$hil" sim image --version acs-sim-2.0.0 --out "$dir/acs-sim-2.0.0.bin" --size 16384
status=0
"$hil" soak --bench "$dir/sim/bench.yaml" --bench "$dir/sim/ack/bench.yaml" --cycles "$cycles" --seed "$seed" \
  --faults "$faults" --noise-rate 1e-4 --image "$dir/acs-sim-2.0.0.bin" --expect-version acs-sim-2.0.0 \
  --read-timeout 30s --progress-every 10 --out "$dir/report" || status=$?
echo
echo "== counters ($dir/report/soak.json)"
python3 - "$dir/report/soak.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for k, v in r["counters"].items():
    print(f"  {k:24} {v}")
print(f"  seed {r['seed']}, {r['cycles']} cycles, {len(r['targets'])} targets")
for s in r["steps"]:
    print(f"  {s['step']:14} runs {s['runs']:6}  failures {s['failures']:4}  retries {s['retries']:4}  flake rate {100*s['flake_rate']:6.2f}%")
PY
echo "soak took $(( $(date +%s) - start )) s; page: $dir/report/soak.html, JUnit: $dir/report/soak-junit.xml"
exit $status
