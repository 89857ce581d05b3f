// Package usb flashes devices over USB DFU 1.1 (and ST's DfuSe variant) through gousb.
//
// The protocol code (dfu.go, download.go, dfuse.go) talks only to the Control and Device
// interfaces: one control transfer, plus a USB reset. Descriptors are read with
// GET_DESCRIPTOR over Control too, so the same code runs against
//
//   - USBDevice (gousb.go), a thin adapter on gousb/libusb: open by VID:PID(:serial),
//     claim, reset, reopen after re-enumeration; libusb's pipe error becomes ErrStall and
//     its no-device error ErrDeviceGone;
//   - fakedfu.Device, a fake with its own DFU state machine and fault injection;
//   - Playback, which replays a text recording made with Record (playback.go documents the
//     format), so a session captured on a bench replays in CI.
//
// Waits the device asks for (bwPollTimeout) go through a Clock, so tests check them on
// simulated time; RealClock sleeps them with nanosleep for precision.
//
// # umockdev
//
// umockdev 0.17 can present a USB device to libusb here, so the real gousb path runs end
// to end (TestUmockdevGousb). What works and what does not:
//
//   - `umockdev-run --device X.umockdev` with a hand-written sysfs description (descriptors
//     attribute = device + configuration descriptor) is enough for libusb to enumerate and
//     open the device (WriteUmockdevDevice writes one from any Control).
//   - `--ioctl /dev/bus/usb/BBB/DDD=X.ioctl` (usbdevfs ioctl replay) does not work for
//     control transfers: umockdev matches a submitted URB against the recorded
//     USBDEVFS_REAPURB by comparing the whole buffer when the endpoint's direction bit is
//     clear, and control URBs use endpoint 0 for both directions, so an IN transfer is
//     compared including its data stage. libusb_control_transfer mallocs that buffer
//     uninitialised, so the comparison fails ("handling SUBMITURB, buffer mismatch,
//     rejecting" with UMOCKDEV_DEBUG=ioctl-tree) and SUBMITURB returns ENOTTY: libusb
//     reports an I/O error. It fails even with the caller's buffer prefilled.
//   - `--pcap SYSFS=X.pcap` (usbmon capture replay, LINKTYPE_USB_LINUX_MMAPPED) does replay
//     control transfers in order. WriteUsbmonPcap converts a recording to such a capture;
//     a host that sends other data than recorded gets no completion ("Replay may be stuck")
//     and its transfer times out, so USBDevice sets a control timeout. USB resets cannot
//     be replayed this way, so the umockdev test uses a manifestation-tolerant device.
package usb
