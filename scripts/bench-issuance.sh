#!/usr/bin/env bash
# Compare the FFS provisioning guide's openssl issuance with the harness's in-process issuance.
#
#   scripts/bench-issuance.sh [N]     N devices (default 50, or $N)
#   BENCH_STRICT=1 scripts/...        exit 1 when the harness is not >= 20x faster
#
# Makes a development PKI (fixtures/pki/dev-pki.sh) and N CSRs with
#   openssl req -new -nodes -config fixtures/profiles/device.conf -newkey ec:PARAMS
# then times, per CSR, the FFS provisioning guide's
#   openssl x509 -req -in device.csr -extfile device.conf -extensions req_ext \
#       -CA dak-certificate.pem -CAkey dak_private_key.pem -days 1825 -sha256
# and the harness issuing the same CSRs (pki.Issuer via
# harness/pki/internal/benchissue: read CSR, check, issue, sign, write chain).
# Every harness chain is then checked with openssl verify.
set -euo pipefail

n=${1:-${N:-50}}
case $n in '' | *[!0-9]* | 0) echo "usage: $0 [N>0]" >&2; exit 2 ;; esac
repo=$(cd "$(dirname "$0")/.." && pwd)
conf="$repo/fixtures/profiles/device.conf"
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-issuance.XXXXXX")
trap 'rm -rf "$work"' EXIT

now_ns() { date +%s%N; }

sh "$repo/fixtures/pki/dev-pki.sh" "$work/pki" >/dev/null 2>&1
mkdir -p "$work/csr" "$work/keys" "$work/openssl" "$work/harness"
(umask 077; openssl ecparam -name prime256v1 -out "$work/params.pem")
for i in $(seq -w 1 "$n"); do
	(umask 077; openssl req -new -nodes -config "$conf" -newkey ec:"$work/params.pem" \
		-keyout "$work/keys/device-$i.key" -out "$work/csr/device-$i.csr" 2>/dev/null)
done

(cd "$repo" && go build -o "$work/benchissue" ./harness/pki/internal/benchissue)

# openssl, one process per device, as on today's line.
t0=$(now_ns)
for f in "$work"/csr/*.csr; do
	b=$(basename "$f" .csr)
	openssl x509 -req -in "$f" -extfile "$conf" -extensions req_ext \
		-CA "$work/pki/dak.pem" -CAkey "$work/pki/dak.key" -days 1825 -sha256 \
		-out "$work/openssl/$b.pem" 2>/dev/null
done
t1=$(now_ns)
openssl_us=$(( (t1 - t0) / 1000 ))

# The harness: one process for the whole batch (profile, DAK loaded once).
out=$("$work/benchissue" -conf "$conf" -ca "$work/pki/dak.pem" -cakey "$work/pki/dak.key" \
	-csrdir "$work/csr" -outdir "$work/harness")
harness_total_us=$(sed -n 's/.*total_us=\([0-9]*\).*/\1/p' <<<"$out")
harness_startup_us=$(sed -n 's/.*startup_us=\([0-9]*\).*/\1/p' <<<"$out")
harness_issue_us=$(sed -n 's/.*issue_only_per_device_us=\([0-9.]*\).*/\1/p' <<<"$out")

bad=0
for f in "$work"/harness/*.pem; do
	if ! openssl verify -CAfile "$work/pki/root.pem" -untrusted "$f" "$f" >/dev/null 2>&1; then
		echo "openssl verify failed for $(basename "$f")" >&2
		bad=$((bad + 1))
	fi
done
if [ "$bad" -ne 0 ]; then
	echo "FAIL: $bad harness chains do not verify" >&2
	exit 1
fi

awk -v n="$n" -v o="$openssl_us" -v h="$harness_total_us" -v s="$harness_startup_us" -v i="$harness_issue_us" 'BEGIN {
	op = o / n; hp = h / n; ratio = (hp > 0) ? op / hp : 0
	printf "devices:                                  %9d\n", n
	printf "openssl x509 -req (the FFS provisioning guide), per device: %9.3f ms\n", op / 1000
	printf "harness pki.Issuer, per device:           %9.3f ms  (file I/O included; Issue alone %.3f ms; one-time start-up %.3f ms)\n", hp / 1000, i / 1000, s / 1000
	printf "ratio (openssl / harness):                %9.1fx  (goal >= 20x: %s)\n", ratio, (ratio >= 20 ? "met" : "MISSED")
	printf "all %d harness chains pass openssl verify\n", n
	exit (ratio >= 20) ? 0 : 3
}' || {
	rc=$?
	if [ "$rc" -eq 3 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then exit 1; fi
	[ "$rc" -eq 3 ] || exit "$rc"
}
