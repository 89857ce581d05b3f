# fw_version: print the version of the running firmware, the one the boot ROM
# started (it records it in $RUNNING at boot). The sim writes a header above
# this with BB and RUNNING.

if [ $# -ne 0 ]; then
	echo "usage: fw_version" >&2
	exit 2
fi
if [ ! -s "$RUNNING" ]; then
	echo "fw_version: running version unknown" >&2
	exit 1
fi
$BB cat "$RUNNING"
