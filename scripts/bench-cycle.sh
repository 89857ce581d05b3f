#!/usr/bin/env bash
# Figures for the ACS cycle on simulated devices:
#  1. one device without a line-rate model: `hil provision` end to end (goal: at most 150 ms on an
#     idle machine), and the harness's own time per device, from its transcript: every gap before
#     something the harness sent, since the record before it (goal: at most 10 ms);
#  2. one cycle at a modelled 115200 baud: wall time against the line-rate bound, the busier
#     direction's bytes / 11520 B/s (the simulator paces each direction on its own; the device's
#     own processing time, which only the simulator knows, is taken out by
#     BenchmarkProvisionCycle115200's harness-overhead-% in targets/acs);
#  3. peak RSS of `hil provision --all` on 32 simulated devices at once (goal: at most 100 MB).
set -euo pipefail
hil=$(realpath "${1:-bin/hil}")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

start_sim() { # dir n baud
  "$hil" sim --dir "$1" --n "$2" --baud "$3" --boot-delay 50ms >"$1.log" 2>&1 &
  for _ in $(seq 300); do grep -q '^bench file' "$1.log" 2>/dev/null && return 0; sleep 0.1; done
  cat "$1.log"; return 1
}

echo "== one device, no line-rate model: hil provision end to end (5 runs; the device gets a new identity each time)"
start_sim "$work/idle" 1 0
for i in 1 2 3 4 5; do
  more=(); [ "$i" -gt 1 ] && more=(--reprovision)
  t0=$(date +%s%N)
  "$hil" provision --bench "$work/idle/bench.yaml" --all "${more[@]}" >"$work/idle-provision-$i.log"
  echo $(( ($(date +%s%N) - t0) / 1000 )) >>"$work/idle-us"
done
python3 - "$work/idle/out" "$work/idle-us" <<'PY'
import datetime, glob, re, statistics, sys
walls = [int(l) / 1000 for l in open(sys.argv[2])]
own = []
for tr in sorted(glob.glob(sys.argv[1] + "/runs/*-provision/*.transcript")):
    prev, total = None, 0.0
    for line in open(tr):
        m = re.match(r"(\S+Z) \S+ ([<>]) ", line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
        if m.group(2) == ">" and prev is not None:
            total += (t - prev).total_seconds() * 1000
        prev = t
    own.append(total)
print(f"end to end: median {statistics.median(walls):.0f} ms (runs: {', '.join(f'{w:.0f}' for w in walls)} ms)")
print(f"the harness's own time per device (gaps before its sends): median {statistics.median(own):.1f} ms "
      f"(runs: {', '.join(f'{o:.1f}' for o in own)} ms)")
PY

echo "== one cycle at 115200 baud (modelled)"
start_sim "$work/line" 1 115200
"$hil" provision --bench "$work/line/bench.yaml" --all >"$work/line-provision.log"
python3 - "$work/line/out" <<'PY'
import json, glob, sys
rep = json.load(open(sorted(glob.glob(sys.argv[1] + "/runs/*-provision/report.json"))[-1]))
o = rep["outcomes"][0]
tx, rx = int(o["facts"]["tx_bytes"]), int(o["facts"]["rx_bytes"])
wall = o["duration_ns"] / 1e9
bound = max(tx, rx) / 11520  # each direction on its own: the busier one bounds
print(f"bytes sent {tx}, received {rx}; line-rate bound (busier direction) {bound:.3f} s; wall {wall:.3f} s; "
      f"wall/bound {wall/bound:.2f} ({(wall/bound-1)*100:+.1f}%; the device's processing time is in the difference)")
PY

echo "== 32 devices at once: peak RSS of hil provision"
start_sim "$work/many" 32 0
/usr/bin/time -v "$hil" provision --bench "$work/many/bench.yaml" --all >"$work/many-provision.log" 2>"$work/many-time.log"
grep -E '^[0-9]+ passed' "$work/many-provision.log"
grep -E 'Maximum resident set size|Elapsed \(wall' "$work/many-time.log"
