package usb

import (
	"fmt"
	"time"
)

// State is a DFU 1.1 device state (bState).
type State uint8

// DFU 1.1 states.
const (
	AppIdle State = iota
	AppDetach
	DfuIdle
	DnloadSync
	DnBusy
	DnloadIdle
	ManifestSync
	Manifest
	ManifestWaitReset
	UploadIdle
	DfuError
)

var stateNames = [...]string{"appIDLE", "appDETACH", "dfuIDLE", "dfuDNLOAD-SYNC", "dfuDNBUSY",
	"dfuDNLOAD-IDLE", "dfuMANIFEST-SYNC", "dfuMANIFEST", "dfuMANIFEST-WAIT-RESET",
	"dfuUPLOAD-IDLE", "dfuERROR"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Status is a DFU 1.1 status code (bStatus).
type Status uint8

// DFU 1.1 status codes.
const (
	StatusOK Status = iota
	StatusErrTarget
	StatusErrFile
	StatusErrWrite
	StatusErrErase
	StatusErrCheckErased
	StatusErrProg
	StatusErrVerify
	StatusErrAddress
	StatusErrNotDone
	StatusErrFirmware
	StatusErrVendor
	StatusErrUSBR
	StatusErrPOR
	StatusErrUnknown
	StatusErrStalledPkt
)

var statusNames = [...]string{"OK", "errTARGET", "errFILE", "errWRITE", "errERASE",
	"errCHECK_ERASED", "errPROG", "errVERIFY", "errADDRESS", "errNOTDONE", "errFIRMWARE",
	"errVENDOR", "errUSBR", "errPOR", "errUNKNOWN", "errSTALLEDPKT"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// DeviceStatus is a GETSTATUS answer.
type DeviceStatus struct {
	Status      Status
	PollTimeout time.Duration // bwPollTimeout: the least wait before the next GETSTATUS
	State       State
	IString     uint8
}

// StateError is a device found in a state (or status) the protocol cannot continue from.
type StateError struct {
	State  State
	Status Status
	Want   string // what was expected, e.g. "dfuIDLE"; empty for a plain error status
}

func (e *StateError) Error() string {
	msg := fmt.Sprintf("device in %s (status %s)", e.State, e.Status)
	if e.Want != "" {
		msg += ", want " + e.Want
	}
	return msg
}
