//go:build linux

package yubikey

// A thin, read-mostly PC/SC client (libpcsclite, the same library piv-go
// links) for the few things piv-go v2.6.0 cannot do:
//
//   - find a card by serial without piv.Open, whose failure paths leave an
//     exclusive handle behind when the card in a reader is not a PIV card
//     (SELECT fails after SCardConnect and the handle is never closed);
//   - reset the card (SCardDisconnect with SCARD_RESET_CARD), so that a
//     session starts without a PIN verification left by another program
//     (the PIV security status is volatile: SP 800-73-4 Part 2, 3.2.1);
//   - read the PIN and PUK retry counters with Yubico's GET METADATA
//     (piv-go's KeyInfo rejects the PIN/PUK algorithm byte 0xFF).
//
// It never sends a PIN, a PUK or a management key.

/*
#cgo pkg-config: libpcsclite
#include <stdlib.h>
#include <PCSC/winscard.h>
#include <PCSC/wintypes.h>
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// PC/SC return codes the helper tells apart (pcsclite.h).
const (
	scardENoSmartcard     = 0x8010000C
	scardESharing         = 0x8010000B
	scardEUnknownReader   = 0x80100009
	scardEReaderUnavail   = 0x80100017
	scardENoReaders       = 0x8010002E
	scardWRemovedCard     = 0x80100069
	scardWUnpoweredCard   = 0x80100067
	scardEUnsupportedCard = 0x8010001C
)

// pcscError is a PC/SC call that failed.
type pcscError struct {
	op string
	rc uint32
}

func (e *pcscError) Error() string {
	return fmt.Sprintf("%s: %s (PC/SC 0x%08X)", e.op, pcscMessage(e.rc), e.rc)
}

// noCard reports whether the reader has no (usable) card in it.
func (e *pcscError) noCard() bool {
	switch e.rc {
	case scardENoSmartcard, scardWRemovedCard, scardWUnpoweredCard, scardEUnknownReader, scardEReaderUnavail:
		return true
	}
	return false
}

func pcscMessage(rc uint32) string {
	switch rc {
	case scardENoSmartcard:
		return "no card in the reader"
	case scardESharing:
		return "the card is in use by another program"
	case scardEUnknownReader:
		return "unknown reader"
	case scardEReaderUnavail:
		return "reader unavailable"
	case scardENoReaders:
		return "no readers"
	case scardWRemovedCard:
		return "the card was removed"
	case scardWUnpoweredCard:
		return "the card is not powered"
	case scardEUnsupportedCard:
		return "unsupported card"
	case 0x8010001D:
		return "pcscd is not running"
	}
	return "PC/SC error"
}

func scCheck(op string, rc C.LONG) error {
	if rc == C.SCARD_S_SUCCESS {
		return nil
	}
	return &pcscError{op: op, rc: uint32(rc)}
}

// rawContext is a PC/SC context.
type rawContext struct{ ctx C.SCARDCONTEXT }

func newRawContext() (*rawContext, error) {
	var ctx C.SCARDCONTEXT
	if err := scCheck("connecting to pcscd", C.SCardEstablishContext(C.SCARD_SCOPE_SYSTEM, nil, nil, &ctx)); err != nil {
		return nil, err
	}
	return &rawContext{ctx: ctx}, nil
}

func (c *rawContext) close() { C.SCardReleaseContext(c.ctx) }

// readers lists the PC/SC readers (none is not an error).
func (c *rawContext) readers() ([]string, error) {
	var n C.DWORD
	rc := C.SCardListReaders(c.ctx, nil, nil, &n)
	if uint32(rc) == scardENoReaders {
		return nil, nil
	}
	if err := scCheck("listing readers", rc); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	rc = C.SCardListReaders(c.ctx, nil, (*C.char)(unsafe.Pointer(&buf[0])), &n)
	if uint32(rc) == scardENoReaders {
		return nil, nil
	}
	if err := scCheck("listing readers", rc); err != nil {
		return nil, err
	}
	return splitMultiString(buf[:n]), nil
}

// splitMultiString splits a PC/SC multi-string (NUL-separated, ending in
// two NULs).
func splitMultiString(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// rawCard is an exclusive connection to the card in one reader.
type rawCard struct{ h C.SCARDHANDLE }

func (c *rawContext) connect(reader string) (*rawCard, error) {
	cr := C.CString(reader)
	defer C.free(unsafe.Pointer(cr))
	var h C.SCARDHANDLE
	var proto C.DWORD
	rc := C.SCardConnect(c.ctx, cr, C.SCARD_SHARE_EXCLUSIVE, C.SCARD_PROTOCOL_T1, &h, &proto)
	if err := scCheck(fmt.Sprintf("connecting to the card in %q", reader), rc); err != nil {
		return nil, err
	}
	return &rawCard{h: h}, nil
}

// disconnect ends the connection, resetting the card if reset is set.
func (r *rawCard) disconnect(reset bool) error {
	disp := C.DWORD(C.SCARD_LEAVE_CARD)
	if reset {
		disp = C.SCARD_RESET_CARD
	}
	return scCheck("disconnecting from the card", C.SCardDisconnect(r.h, disp))
}

// transmit sends one short command APDU and collects the whole response
// (GET RESPONSE while the card answers 61xx, ISO/IEC 7816-4 7.6.1). It
// returns the data and the final status word.
func (r *rawCard) transmit(apdu []byte) ([]byte, uint16, error) {
	var out []byte
	cmd := apdu
	for range 64 {
		resp := make([]byte, C.MAX_BUFFER_SIZE_EXTENDED)
		n := C.DWORD(len(resp))
		rc := C.SCardTransmit(r.h, C.SCARD_PCI_T1,
			(*C.BYTE)(unsafe.Pointer(&cmd[0])), C.DWORD(len(cmd)), nil,
			(*C.BYTE)(unsafe.Pointer(&resp[0])), &n)
		if err := scCheck("transmitting to the card", rc); err != nil {
			return nil, 0, err
		}
		if n < 2 {
			return nil, 0, fmt.Errorf("card response of %d bytes has no status word", n)
		}
		sw := binary.BigEndian.Uint16(resp[n-2 : n])
		out = append(out, resp[:n-2]...)
		if sw>>8 != 0x61 {
			return out, sw, nil
		}
		cmd = []byte{0x00, 0xC0, 0x00, 0x00, byte(sw)}
	}
	return nil, 0, fmt.Errorf("card sent more than 64 response chunks")
}
