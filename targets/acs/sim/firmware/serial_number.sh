# serial_number: print the board's serial number (programmed at the factory; the sim keeps it
# in $SERIAL). The sim writes a header above this with BB and SERIAL.

if [ $# -ne 0 ]; then
	echo "usage: serial_number" >&2
	exit 2
fi
if [ ! -s "$SERIAL" ]; then
	echo "serial_number: no serial number programmed" >&2
	exit 1
fi
$BB cat "$SERIAL"
