#!/usr/bin/env bash
# The main job on a simulated bench: 4 simulated ACS devices on real pseudo-terminals, provisioned,
# verified, rebooted, factory-reset and verified again, with a report at the end.
set -euo pipefail
hil=${1:-bin/hil}
dir=${2:-hil-out/demo}
rm -rf "$dir"
mkdir -p "$dir"
"$hil" sim --n 4 --dir "$dir" >"$dir/sim.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -f "$dir/bench.yaml" ] && grep -q '^bench file' "$dir/sim.log" && break
  kill -0 $sim 2>/dev/null || { cat "$dir/sim.log"; exit 1; }
  sleep 0.1
done
cat "$dir/sim.log"
echo
echo "== hil provision --bench $dir/bench.yaml --all"
"$hil" provision --bench "$dir/bench.yaml" --all
echo
echo "== hil verify --bench $dir/bench.yaml --all --reboot --factory-reset"
"$hil" verify --bench "$dir/bench.yaml" --all --reboot --factory-reset
echo
echo "== a second provisioning of the same devices is refused"
if "$hil" provision --bench "$dir/bench.yaml" --target dut1; then
  echo "ERROR: an already provisioned device was provisioned again" >&2
  exit 1
fi
echo
echo "demo passed: records in $dir/out/devices, reports and transcripts in $dir/out/runs"
