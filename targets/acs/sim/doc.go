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
//	                               (openssl req -new -config device.conf, as in the FFS provisioning guide)
//	ace hal dha set_cert FILE      check FILE and store it as the DHA chain (atomically)
//	ace hal dha get_field 0x202    print the stored chain exactly as stored
//	reboot                         restart the board
//	factory_reset                  wipe /data (data/) and restart
//	reboot_bootloader              restart the board into the boot ROM's command line
//	fw_version                     print the running firmware version (one line)
//	serial_number                  print the board's serial number (Config.Serial; Replace
//	                               puts a fresh board with a new one in the slot)
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
//	fw/     firmware slots: slot_a.img, slot_b.img and state ("active=A"
//	        or "active=B", written atomically: temp, fsync, rename); never
//	        touched by factory reset, and flashing touches nothing else
//	bin/ etc/ run/ faults/   firmware, product profile, control FIFO, faults
//	        (run/fw_version: the version the last boot started)
//	power.sock   the power switch, while ServePower serves it
//	tty     symlink to the port
//
// Starting a device on an existing Dir keeps dha/, data/ and fw/, so a
// provisioned or flashed device stays so across simulator restarts. Close
// removes nothing. On the first Start, slot A gets a built-in image of
// Config.Firmware and is active; slot B is empty.
//
// Power. Reboot (and the reboot command) kills the shell and everything it
// started, prints "... reboot: Restarting system.", and after
// Config.BootDelay prints a boot banner (device name, firmware version, boot
// number) and starts the shell again. FactoryReset also wipes data/. PowerOff
// kills everything at once and prints nothing; input while off is lost.
// PowerOn boots. A shell that exits by itself (exit, ^D) is respawned, as
// init would, without a reboot.
//
// # Firmware slots and the boot ROM
//
// Image format (what the simulated boot ROM accepts; BuildImage makes one):
//
//	HILSIM-FW version=<version>\n    first line; version printable ASCII, no spaces
//	<payload>                          any bytes
//	<SHA-256>                          the last 32 bytes: SHA-256 of everything before them
//
// Anything else (no header line, too short, digest mismatch, torn) is
// invalid. A normal boot starts the active slot; if it is invalid and the
// other one is valid, the banner says "boot: slot A invalid, booting slot B"
// and the other slot becomes the active one (so the next loady overwrites the
// broken slot). With no valid slot the board prints "boot: no valid firmware
// in slot A or B, staying in the boot ROM" and enters the boot ROM. The
// banner shows "Boot:  slot X" and "ACS firmware <version of that slot>".
//
// The boot ROM's command line is entered at power-on or reset while the
// boot strap is set (Config.BootloaderStrap, Device.SetBootStrap: a jumper
// that stays until cleared), once after reboot_bootloader, or when no slot is
// valid. It prints "\r\nHILSIM boot ROM 1.0\r\n" and the prompt "=> ",
// echoes what is typed (BS/DEL erase, ^C drops the line, CR, LF or CR LF ends
// it) and knows:
//
//	loady    receive an image by YMODEM into the inactive slot
//	slots    "A: version=<v|-> size=<n> sha256=<hex> valid=<yes|no>[ active]", then B
//	boot     boot the active slot (the strap is ignored)
//	reset    "resetting ..." and reset (with the strap set: the boot ROM again)
//	version  "HILSIM boot ROM 1.0"
//	help     the list
//
// and answers anything else with "Unknown command '<x>' - try 'help'".
//
// loady prints "## Ready for binary (ymodem) download to slot B at <Baud>
// bps..." (Baud as configured, 0 = unlimited) and receives one file in a
// YMODEM batch: 'C' once a second until a sender answers (60 s, then "##
// Aborted: no sender"); 128- and 1024-byte blocks with CRC-16/XMODEM; a bad
// block is NAKed, a repeated block ACKed and dropped, a block out of sequence
// cancels (CAN CAN); the first EOT is NAKed, the second ACKed; the batch ends
// with an empty header. The file is cut to the size in its header and written
// into the inactive slot as blocks arrive (a power cut leaves that slot torn;
// the active slot and the state file are untouched). CAN CAN from the sender
// ("## Aborted by sender") and 10 s (Config.LoadyIdle) without a byte ("## Aborted: timeout",
// after CAN CAN) abort. After the batch the boot ROM waits until the line has
// been quiet for 0.5 s (senders such as lrzsz's sb read and flush what
// arrives right after their last ACK), then prints
//
//	## Total Size      = 0x<hex8> = <n> Bytes
//	## SHA-256        = <hex of the received bytes>
//
// and either "## Slot B: version <v> installed, active" (the state file now
// names the slot) or "## Image invalid: <why>" (the previous slot stays
// active), then the prompt. Aborts print "## Aborted...", after the line is
// quiet, and no report.
//
// A reset in the boot ROM (Reboot, the reset command) prints "resetting ..."
// instead of the shell's shutdown messages; Boots counts firmware boots only.
//
// RunningVersion, RunningSlot, ActiveSlot, InBootloader and SlotPath expose
// this state to tests; ServePower serves PowerOn/PowerOff on <Dir>/power.sock
// (package simpower's protocol).
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
