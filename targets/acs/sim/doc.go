// Package sim simulates ACS (Amazon Common Software) devices on a serial
// console, for testing the ACS driver without hardware.
//
// It shares no code with the driver or the harness: a driver must not pass by
// sharing a bug with its simulator. The device's firmware is made of real
// tools (busybox ash, openssl), so echo, line endings, line editing, exit
// codes and PEM output are those of a real busybox system.
//
// # Concepts
//
// Port. Each device has a pseudo-terminal "A" standing in for the USB-UART
// adapter. The harness opens its slave (PortPath, a stable symlink <Dir>/tty
// to /dev/pts/N) with go.bug.st/serial exactly as it opens /dev/ttyUSB0. The
// simulator keeps its own fd on the slave, so the port survives the harness
// closing and reopening it, and stays while the device reboots or is off.
// Bytes the device sends while nobody has the port open stay queued in the
// pty (as in an adapter's FIFO) until a full queue loses them.
//
// Line. With Config.Baud > 0 each direction carries at most Baud/10 bytes per
// second (8N1), so timings mean something, and a harness that sets the port
// to another rate (termios) reads garbage and sends garbage, as on hardware.
// Baud 0: unlimited, no rate check.
//
// Firmware. The console is a real `busybox sh -i` on a second pty "B"; the
// simulator copies bytes between A and B. PATH is <Dir>/bin only: busybox
// applets of a small device (cat, printf, sha256sum, base64, sed, awk, ...)
// plus the firmware commands, which are sh scripts (firmware/*.sh, embedded):
//
//	ace hal dha key_gen            make the P-256 DHA key in dha/ (replaces one that exists;
//	                               a stored chain is kept and then no longer matches)
//	ace hal dha get_field 0x201    print a CSR for the key, built from the product profile
//	                               (openssl req -new -config device.conf, as in seed 002)
//	ace hal dha set_cert FILE      check FILE and store it as the DHA chain (atomically)
//	ace hal dha get_field 0x202    print the stored chain exactly as stored
//	reboot                         restart the board
//	factory_reset                  wipe /data (data/) and restart
//
// set_cert refuses (exit 1, "ace: dha: set_cert: ..." on stderr) a file that
// is not only CERTIFICATE PEM blocks, holds fewer than 2 certificates, has a
// certificate openssl cannot parse, whose leaf key is not the device key, or
// where a certificate is not issued by the next one (openssl verify
// -partial_chain, so each issuer must be a valid CA certificate). Other errors:
// "ace: dha: no DHA key ..." and "ace: dha: no certificate provisioned"
// (exit 1); usage errors exit 2. Busybox ash prints its own banner and, after
// each prompt, a cursor position query (ESC [ 6 n), as on real busybox.
//
// Storage, under Config.Dir:
//
//	dha/    key and chain: survives reboot, power cut and factory reset
//	data/   the device's /data (DataDir): wiped by factory reset; the
//	        simulated shell runs on the host and has no /data, so the
//	        driver's data_dir must point at DataDir
//	root/   HOME and working directory of the shell
//	tmp/    the device's /tmp, emptied at every boot
//	bin/ etc/ run/ faults/   firmware, product profile, control FIFO, faults
//	tty     symlink to the port
//
// Starting a device on an existing Dir keeps dha/ and data/, so a provisioned
// device stays provisioned across simulator restarts. Close removes nothing.
//
// Power. Reboot (and the reboot command) kills the shell and everything it
// started, prints "... reboot: Restarting system.", and after
// Config.BootDelay prints a boot banner (device name, firmware version, boot
// number) and starts the shell again. FactoryReset also wipes data/. PowerOff
// kills everything at once and prints nothing; input while off is lost.
// PowerOn boots. A shell that exits by itself (exit, ^D) is respawned, as
// init would, without a reboot.
//
// # Faults
//
// Line faults act at once: SetSilent (the device sends nothing but still
// runs), InjectNoise (n random bytes now), SetNoiseRate (each byte replaced
// with probability p). Device-side faults, SetFault with one of:
//
//	csr_truncated    get_field 0x201 prints the first half of the CSR PEM, exit 0
//	csr_missing      get_field 0x201 prints nothing, exit 0
//	set_cert_reject  set_cert fails: error on stderr, exit 1, nothing stored
//	chain_corrupt    get_field 0x202 prints the chain with one base64 character
//	                 of the first certificate changed
//	no_prompt        shells started from the next boot on have an empty PS1
//
// They are files in <Dir>/faults, read by the firmware when a command runs,
// and cleared by Start.
package sim
