#!/usr/bin/env bash
# The main job on a simulated bench: 4 simulated ACS devices on real pseudo-terminals, provisioned,
# verified, rebooted, factory-reset and verified again; a firmware update the identity survives; a
# power cycle; and 3 simulated ACK modules (2 native, 1 through the stand-in vendor tool).
set -euo pipefail
hil=${1:-bin/hil}
dir=${2:-hil-out/demo}
rm -rf "$dir"
mkdir -p "$dir"
"$hil" sim --n 4 --modules 2 --external 1 --dir "$dir" >"$dir/sim.log" 2>&1 &
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
echo "== provisioning again: each device holds the chain its ledger record names, so nothing is signed"
"$hil" provision --bench "$dir/bench.yaml" --all | tee "$dir/again.log"
if ! grep -q "already provisioned" "$dir/again.log"; then
  echo "ERROR: a second run did not recognise the devices' recorded identities" >&2
  exit 1
fi
echo
echo "== the ledger: one record per certificate, consistent with the DAK budget and the audit log"
"$hil" ledger list --bench "$dir/bench.yaml"
"$hil" ledger check --bench "$dir/bench.yaml"
echo
echo "== firmware update over the console (YMODEM into the boot ROM); the identity survives it"
"$hil" sim image --version acs-sim-2.0.0 --out "$dir/acs-sim-2.0.0.bin"
"$hil" flash --bench "$dir/bench.yaml" --target dut2 --expect-version acs-sim-2.0.0 "$dir/acs-sim-2.0.0.bin"
"$hil" verify --bench "$dir/bench.yaml" --target dut2
echo
echo "== power cycle, then the identity is still there"
"$hil" power cycle --bench "$dir/bench.yaml" dut3
"$hil" verify --bench "$dir/bench.yaml" --target dut3
echo
echo "== ACK modules: native HA1 dialect and the vendor tool (external mode)"
"$hil" provision --bench "$dir/ack/bench.yaml" --all
"$hil" verify --bench "$dir/ack/bench.yaml" --all --reboot --factory-reset
echo
"$hil" ledger check --bench "$dir/ack/bench.yaml"
echo
echo "demo passed: ledgers $dir/out/ledger.db and $dir/ack/out/ledger.db (hil ledger export), reports and"
echo "transcripts in $dir/out/runs and $dir/ack/out/runs"
