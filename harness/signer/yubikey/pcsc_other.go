//go:build !linux

package yubikey

import "errors"

// The raw PC/SC helper (card discovery by serial, card reset, PIN/PUK
// metadata) is written for pcsc-lite on Linux, where the harness runs.

var errNoRawPCSC = errors.New("the yubikey package's PC/SC helper supports Linux (pcsc-lite) only")

type pcscError struct {
	op string
	rc uint32
}

func (e *pcscError) Error() string { return e.op }
func (e *pcscError) noCard() bool  { return false }

type rawContext struct{}

func newRawContext() (*rawContext, error)                  { return nil, errNoRawPCSC }
func (c *rawContext) close()                               {}
func (c *rawContext) readers() ([]string, error)           { return nil, errNoRawPCSC }
func (c *rawContext) connect(string) (*rawCard, error)     { return nil, errNoRawPCSC }
func (r *rawCard) disconnect(bool) error                   { return errNoRawPCSC }
func (r *rawCard) transmit([]byte) ([]byte, uint16, error) { return nil, 0, errNoRawPCSC }

type rawCard struct{}
