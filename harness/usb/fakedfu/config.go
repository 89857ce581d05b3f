// Package fakedfu is a fake USB DFU 1.1 device for tests and benchmarks. It keeps its own
// state machine (DFU 1.1 figure A.1, and ST's DfuSe commands) and shares no protocol code
// with package usb, so a mistake in one is not mirrored in the other.
package fakedfu

import "time"

// Config describes the fake device. The zero value is a DFU-mode device with 1 KiB blocks
// that programs instantly.
type Config struct {
	Interface    uint8 // bInterfaceNumber
	TransferSize int   // wTransferSize; 1024 when 0
	// ProgramTime is how long the device stays dfuDNBUSY per block (and per DfuSe command).
	ProgramTime time.Duration
	// PollTimeout is the bwPollTimeout reported in dfuDNBUSY; ProgramTime when 0. A smaller
	// value makes the device ask the host to come back more than once.
	PollTimeout time.Duration
	// RealTime makes the fake live on the wall clock (benchmarks); otherwise it reads Clock.
	RealTime bool
	Clock    *SimClock // simulated time when not RealTime; a new one when nil

	ManifestationTolerant bool
	WillDetach            bool
	ManifestPolls         int           // GETSTATUS answered with dfuMANIFEST before it completes
	ManifestPoll          time.Duration // bwPollTimeout reported in dfuMANIFEST

	Runtime        bool   // start as the application (appIDLE), DETACH needed
	RuntimeStall   bool   // in runtime, GETSTATUS stalls (optional per DFU 1.1)
	DetachTimeout  uint16 // wDetachTimeOut, ms; 1000 when 0
	UploadData     []byte // what UPLOAD reads (plain DFU); nil: no bitCanUpload
	StartInError   bool   // start in dfuERROR (status errUNKNOWN), needs CLRSTATUS
	ErrorOnBlock   int    // 1-based data block that fails once with ErrorStatus; 0 never
	ErrorStatus    uint8  // status for ErrorOnBlock; errVERIFY when 0
	StallOnBlock   int    // 1-based data block whose DNLOAD stalls, once
	GoneAfterBlock int    // 1-based data block after which the device vanishes

	// MemoryMap makes a DfuSe device (bcdDFU 0x011A) with this alt-setting name.
	MemoryMap string
}

// DFU 1.1 states and status codes, as the fake knows them.
const (
	appIdle = iota
	appDetach
	dfuIdle
	dnloadSync
	dnBusy
	dnloadIdle
	manifestSync
	manifest
	manifestWaitReset
	uploadIdle
	dfuError
)

const (
	statusOK         = 0x00
	statusErrTarget  = 0x01
	statusErrWrite   = 0x03
	statusErrProg    = 0x06
	statusErrVerify  = 0x07
	statusErrAddress = 0x08
	statusErrUnknown = 0x0E
	statusErrStalled = 0x0F
)

// Status codes a test may choose for ErrorOnBlock.
const (
	ErrWrite  = statusErrWrite
	ErrVerify = statusErrVerify
	ErrProg   = statusErrProg
)
