# ace: the Amazon Common Software tool, reduced to its DHA HAL commands.
# The sim writes a header above this (#! line, BB, OPENSSL, DHA, FAULTS,
# PROFILE, TMPD) so the script needs nothing from the shell's environment.

umask 077
KEY="$DHA/dha_key.pem"
CHAIN="$DHA/dha_chain.pem"

err() { echo "ace: $*" >&2; }
has_fault() { [ -e "$FAULTS/$1" ]; }
show_err() { [ -s "$WORK/err" ] && $BB sed 's/^/ace:   /' "$WORK/err" >&2; return 0; }

usage() {
	echo "usage: ace hal dha key_gen" >&2
	echo "       ace hal dha get_field <0x201|0x202>" >&2
	echo "       ace hal dha set_cert <file>" >&2
	exit 2
}

# commit SRC DST replaces DST so that after a power cut it holds either the
# old or the new content, never a mix: copy to a temp file, rename. (No sync:
# a simulated power cut kills the device's processes, not the host, and a
# host-wide sync costs every simulated device on the machine.)
commit() {
	tmp="$DHA/.$($BB basename "$2").$$.tmp"
	$BB cp "$1" "$tmp" && $BB mv -f "$tmp" "$2"
}

need_key() {
	[ -s "$KEY" ] && return 0
	err "dha: no DHA key (run 'ace hal dha key_gen' first)"
	exit 1
}

key_gen() {
	[ $# -eq 0 ] || usage
	# The key file holds the private key and, after it, the public key, so
	# set_cert compares keys without another openssl run; one file keeps the
	# two from ever disagreeing after a power cut.
	if ! "$OPENSSL" ecparam -genkey -name prime256v1 -noout -out "$WORK/key.pem" 2>"$WORK/err" ||
		! "$OPENSSL" ec -in "$WORK/key.pem" -pubout 2>"$WORK/err" >>"$WORK/key.pem"; then
		err "dha: key_gen: key generation failed"
		show_err
		exit 1
	fi
	if ! commit "$WORK/key.pem" "$KEY"; then
		err "dha: key_gen: cannot write secure storage"
		exit 1
	fi
}

get_csr() {
	need_key
	has_fault csr_missing && exit 0
	if ! "$OPENSSL" req -new -key "$KEY" -config "$PROFILE" -out "$WORK/csr.pem" 2>"$WORK/err"; then
		err "dha: get_field 0x201: cannot build the CSR"
		show_err
		exit 1
	fi
	if has_fault csr_truncated; then
		n=$($BB wc -c <"$WORK/csr.pem")
		$BB head -c $((n / 2)) "$WORK/csr.pem"
	else
		$BB cat "$WORK/csr.pem"
	fi
}

get_chain() {
	if [ ! -s "$CHAIN" ]; then
		err "dha: no certificate provisioned"
		exit 1
	fi
	if ! has_fault chain_corrupt; then
		$BB cat "$CHAIN"
		return
	fi
	# Flip the 11th character of the first base64 line of the first
	# certificate (inside the DER header, so the certificate no longer parses).
	$BB awk '
		{ line = $0; sub(/\r$/, "", line) }
		!done && seen && line ~ /^[A-Za-z0-9+\/=]+$/ && length(line) > 11 {
			c = substr($0, 11, 1); r = (c == "A") ? "B" : "A"
			$0 = substr($0, 1, 10) r substr($0, 12); done = 1
		}
		line == "-----BEGIN CERTIFICATE-----" { seen = 1 }
		{ print }' "$CHAIN"
}

get_field() {
	[ $# -eq 1 ] || usage
	case "$1" in
	0x201 | 0X201) get_csr ;;
	0x202 | 0X202) get_chain ;;
	*)
		err "dha: get_field: unknown field '$1'"
		exit 1
		;;
	esac
}

set_cert() {
	[ $# -eq 1 ] || usage
	f=$1
	need_key
	if [ ! -f "$f" ] || [ ! -r "$f" ]; then
		err "dha: set_cert: cannot open '$f': No such file"
		exit 1
	fi
	if has_fault set_cert_reject; then
		err "dha: set_cert: secure storage write failed (error -5)"
		exit 1
	fi
	# Split the file into certN.pem; anything but CERTIFICATE blocks and
	# blank lines makes it "not a chain" (prints 0).
	n=$($BB awk -v dir="$WORK" '
		{ line = $0; sub(/\r$/, "", line) }
		line == "-----BEGIN CERTIFICATE-----" {
			if (inb) bad = 1
			inb = 1; n++; out = dir "/cert" n ".pem"; print line > out; next
		}
		line == "-----END CERTIFICATE-----" {
			if (!inb) bad = 1
			print line > out; close(out); inb = 0; next
		}
		inb { if (line !~ /^[A-Za-z0-9+\/=]+$/) bad = 1; print line > out; next }
		line ~ /^[ \t]*$/ { next }
		{ bad = 1 }
		END { if (inb || bad) n = 0; print n + 0 }' "$f")
	if [ "${n:-0}" -eq 0 ]; then
		err "dha: set_cert: '$f' is not a PEM certificate chain"
		exit 1
	fi
	if [ "$n" -lt 2 ]; then
		err "dha: set_cert: '$f' holds 1 certificate; the chain needs the device certificate and the DAK certificate"
		exit 1
	fi
	if ! "$OPENSSL" x509 -in "$WORK/cert1.pem" -noout -pubkey -out "$WORK/leaf.pub" 2>"$WORK/err"; then
		err "dha: set_cert: certificate 1 of '$f' is not a valid X.509 certificate"
		show_err
		exit 1
	fi
	$BB sed -n '/-----BEGIN PUBLIC KEY-----/,/-----END PUBLIC KEY-----/p' "$KEY" >"$WORK/dev.pub"
	if [ ! -s "$WORK/dev.pub" ] && ! "$OPENSSL" pkey -in "$KEY" -pubout -out "$WORK/dev.pub" 2>"$WORK/err"; then
		err "dha: set_cert: cannot read the device public key"
		show_err
		exit 1
	fi
	if ! $BB cmp -s "$WORK/leaf.pub" "$WORK/dev.pub"; then
		err "dha: set_cert: certificate public key does not match the device DHA key"
		exit 1
	fi
	i=1
	while [ "$i" -lt "$n" ]; do
		j=$((i + 1))
		if ! "$OPENSSL" verify -no_check_time -partial_chain -trusted "$WORK/cert$j.pem" "$WORK/cert$i.pem" >"$WORK/err" 2>&1; then
			err "dha: set_cert: certificate $i of '$f' is not issued by certificate $j (or one of them is not a valid certificate)"
			show_err
			exit 1
		fi
		i=$j
	done
	if ! commit "$f" "$CHAIN"; then
		err "dha: set_cert: cannot write secure storage"
		exit 1
	fi
}

[ $# -ge 3 ] && [ "$1" = hal ] && [ "$2" = dha ] || usage
cmd=$3
shift 3
case "$cmd" in
key_gen | get_field | set_cert) ;;
*) usage ;;
esac
WORK=$($BB mktemp -d "$TMPD/ace.XXXXXX") || {
	err "cannot create a work directory"
	exit 1
}
trap '$BB rm -rf "$WORK"' EXIT
"$cmd" "$@"
