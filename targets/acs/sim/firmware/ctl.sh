# reboot / factory_reset / reboot_bootloader: ask the board's reset controller (the simulator, via
# the FIFO $CTL) to act. The sim writes a header above this with BB, CTL and
# ACTION. Options (reboot -f, -d N, -n) are accepted and ignored.

if [ ! -p "$CTL" ]; then
	echo "$ACTION: cannot reach the reset controller" >&2
	exit 1
fi
if [ "$ACTION" = factory_reset ]; then
	echo "factory_reset: erasing user data, the device will restart"
fi
# 1<> opens the FIFO read-write, which never blocks.
echo "$ACTION" 1<>"$CTL" || exit 1
# The board resets under this process; waiting keeps the shell from printing
# a prompt that real hardware would never show.
$BB sleep 30
echo "$ACTION: the device did not restart" >&2
exit 1
