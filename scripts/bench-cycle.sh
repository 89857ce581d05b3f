#!/usr/bin/env bash
# Figures for the ACS cycle on simulated devices:
#  1. one cycle at a modelled 115200 baud: wall time against the line-rate bound (bytes / 11520 B/s);
#  2. peak RSS of `hil provision --all` on 32 simulated devices at once (goal: at most 100 MB).
set -euo pipefail
hil=$(realpath "${1:-bin/hil}")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

start_sim() { # dir n baud
  "$hil" sim --dir "$1" --n "$2" --baud "$3" --boot-delay 50ms >"$1.log" 2>&1 &
  for _ in $(seq 300); do grep -q '^bench file' "$1.log" 2>/dev/null && return 0; sleep 0.1; done
  cat "$1.log"; return 1
}

echo "== one cycle at 115200 baud (modelled)"
start_sim "$work/line" 1 115200
"$hil" provision --bench "$work/line/bench.yaml" --all >"$work/line-provision.log"
python3 - "$work/line/out" <<'PY'
import json, glob, sys
rep = json.load(open(sorted(glob.glob(sys.argv[1] + "/runs/*-provision/report.json"))[-1]))
o = rep["outcomes"][0]
tx, rx = int(o["facts"]["tx_bytes"]), int(o["facts"]["rx_bytes"])
wall = o["duration_ns"] / 1e9
bound = (tx + rx) / 11520
print(f"bytes sent {tx}, received {rx}; line-rate bound {bound:.3f} s; wall {wall:.3f} s; "
      f"wall/bound {wall/bound:.2f} ({(wall/bound-1)*100:+.1f}%)")
PY

echo "== 32 devices at once: peak RSS of hil provision"
start_sim "$work/many" 32 0
/usr/bin/time -v "$hil" provision --bench "$work/many/bench.yaml" --all >"$work/many-provision.log" 2>"$work/many-time.log"
grep -E '^[0-9]+ passed' "$work/many-provision.log"
grep -E 'Maximum resident set size|Elapsed \(wall' "$work/many-time.log"
