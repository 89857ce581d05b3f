#!/usr/bin/env bash
# Issuance side by side in one run: the FFS provisioning guide's openssl command per CSR against
# `hil sign --csr-dir` on the same CSRs.
#
#   scripts/bench-issuance.sh [N]     N CSRs (default 1000, or $N)
#   BENCH_STRICT=1 scripts/...        exit 1 when hil sign is not >= 200x faster
#   HIL=bin/hil scripts/...           the hil binary (default: built into the work directory)
#
# Makes a development PKI (fixtures/pki/dev-pki.sh) and N CSRs with
#   openssl req -new -nodes -config fixtures/profiles/device.conf -newkey ec:PARAMS
# then times, per CSR, the FFS provisioning guide's
#   openssl x509 -req -in device.csr -extfile device.conf -extensions req_ext \
#       -CA dak-certificate.pem -CAkey dak_private_key.pem -days 1825 -sha256
#   cat device-certificate.pem dak-certificate.pem > device.pem
# and one `hil sign --bench F --csr-dir csr --out chains` for all of them: the whole station path
# (profile check, ledger reservation with the DAK budget, signature, audit log, ledger record,
# chain files written atomically), process start-up included. Every chain hil wrote is then
# checked with openssl verify, and a second hil sign run must return the same chains from the
# ledger (no new signature).
set -euo pipefail

n=${1:-${N:-1000}}
case $n in '' | *[!0-9]* | 0) echo "usage: $0 [N>0]" >&2; exit 2 ;; esac
goal=200
repo=$(cd "$(dirname "$0")/.." && pwd)
conf="$repo/fixtures/profiles/device.conf"
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-issuance.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

now_ns() { date +%s%N; }

sh "$repo/fixtures/pki/dev-pki.sh" "$work/pki" >/dev/null 2>&1
mkdir -p "$work/csr" "$work/keys" "$work/openssl"
(umask 077; openssl ecparam -name prime256v1 -out "$work/params.pem")
# The CSRs (the devices' side, not timed) on all cores.
seq -w 1 "$n" | (umask 077; xargs -P "$(nproc)" -I{} openssl req -new -nodes -config "$conf" \
	-newkey ec:"$work/params.pem" -keyout "$work/keys/device-{}.key" -out "$work/csr/device-{}.csr" 2>/dev/null)

hil=${HIL:-}
if [ -z "$hil" ]; then
	hil="$work/bin/hil"
	(cd "$repo" && go build -o "$hil" ./cmd/hil)
fi
cat >"$work/bench.yaml" <<EOF
# A signing station: the development DAK as a SoftDAK, the example profile, the ledger in out/.
signer:
  type: softdak
  key: pki/dak.key
  certificate: pki/dak.pem
  roots: [pki/root.pem]
profile:
  device_conf: $conf
output: out
targets:
  - {name: unused, family: acs, console: {port: /dev/null}}
EOF

# The guide's two steps per CSR, as on today's line: openssl x509 -req, then cat for the chain.
t0=$(now_ns)
for f in "$work"/csr/*.csr; do
	b=${f##*/} # no process of the script's own in the timed loop
	b=${b%.csr}
	openssl x509 -req -in "$f" -extfile "$conf" -extensions req_ext \
		-CA "$work/pki/dak.pem" -CAkey "$work/pki/dak.key" -days 1825 -sha256 \
		-out "$work/openssl/$b-certificate.pem" 2>/dev/null
	cat "$work/openssl/$b-certificate.pem" "$work/pki/dak.pem" >"$work/openssl/$b.pem"
done
t1=$(now_ns)
openssl_us=$(((t1 - t0) / 1000))

# hil sign: one process for the whole batch, on all cores.
t0=$(now_ns)
"$hil" sign --bench "$work/bench.yaml" --csr-dir "$work/csr" --out "$work/chains" >"$work/sign.out"
t1=$(now_ns)
hil_us=$(((t1 - t0) / 1000))

bad=0
count=0
for f in "$work"/chains/*.pem; do
	count=$((count + 1))
	if ! openssl verify -CAfile "$work/pki/root.pem" -untrusted "$f" "$f" >/dev/null 2>&1; then
		echo "openssl verify failed for $(basename "$f")" >&2
		bad=$((bad + 1))
	fi
done
if [ "$bad" -ne 0 ] || [ "$count" -ne "$n" ]; then
	echo "FAIL: $count chains written for $n CSRs, $bad do not verify" >&2
	exit 1
fi
# Exactly once: a second run hands out the ledger's chains, no new signature.
cp -r "$work/chains" "$work/chains-first"
"$hil" sign --bench "$work/bench.yaml" --csr-dir "$work/csr" --out "$work/chains" >"$work/sign2.out"
if ! grep -q "($n chains from the ledger" "$work/sign2.out" || ! diff -r "$work/chains" "$work/chains-first" >/dev/null; then
	echo "FAIL: a second hil sign did not return the same $n chains from the ledger: $(cat "$work/sign2.out")" >&2
	exit 1
fi
signatures=$(wc -l <"$work/out/signer/audit.jsonl")

awk -v n="$n" -v o="$openssl_us" -v h="$hil_us" -v goal="$goal" -v sigs="$signatures" -v cores="$(nproc)" 'BEGIN {
	op = o / n; hp = h / n; ratio = (hp > 0) ? op / hp : 0
	printf "CSRs:                                                         %9d (%d cores)\n", n, cores
	printf "openssl x509 -req + cat per CSR (the FFS provisioning guide): %9.3f ms\n", op / 1000
	printf "hil sign --csr-dir, per CSR (start-up, ledger, audit):        %9.3f ms  (%.0f CSRs/s, whole run %.2f s)\n", hp / 1000, (h > 0 ? n * 1e6 / h : 0), h / 1e6
	printf "ratio (openssl / hil sign):                                   %9.1fx  (goal >= %dx: %s)\n", ratio, goal, (ratio >= goal ? "met" : "MISSED")
	printf "all %d chains pass openssl verify; a second run returned them from the ledger (%d signatures in the audit log)\n", n, sigs
	exit (ratio >= goal) ? 0 : 3
}' || {
	rc=$?
	if [ "$rc" -eq 3 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then exit 1; fi
	[ "$rc" -eq 3 ] || exit "$rc"
}
