package sim

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Form factors reported by the management application and the attestation
// form-factor extension (Yubico, "YubiKey Manager config reference").
const (
	FormFactorUSBAKeychain byte = 0x01
	FormFactorUSBANano     byte = 0x02
	FormFactorUSBCKeychain byte = 0x03
	FormFactorUSBCNano     byte = 0x04
)

// Options configure a new card. Except Rand, Now and Logf they only matter
// when the card is created; a card loaded from its state file keeps what it
// was created with.
type Options struct {
	// Serial is the card's serial number; 0 means DefaultSerial. Opening an
	// existing state file with a different non-zero Serial is an error, so a
	// test cannot silently use another card's file.
	Serial uint32
	// FormFactor; 0 means FormFactorUSBAKeychain.
	FormFactor byte
	// AttestationCA issues the card's attestation certificate (slot f9).
	// Nil means a fresh "Virtual YubiKey attestation root" made for this
	// card; see GenerateCA to share one root between cards.
	AttestationCA *CA
	// Rand is the card's random source (challenges, keys, signatures,
	// certificate serials); nil means crypto/rand.
	Rand io.Reader
	// Now is the card's clock for certificates it issues; nil means
	// time.Now.
	Now func() time.Time
	// Logf, if set, receives diagnostics (state file write failures,
	// transport errors). It never receives PINs, PUKs or keys.
	Logf func(format string, args ...any)
	// SignTime makes each signature take at least this long, the card
	// busy meanwhile, as a real token's does (YubiKey5P256SignTime); 0:
	// as fast as this machine signs.
	SignTime time.Duration
}

// YubiKey5P256SignTime is a YubiKey 5's published time for one P-256
// signature: with it, throughput figures are a real line's.
const YubiKey5P256SignTime = 71600 * time.Microsecond

// Card is a YubiKey 5 PIV applet (plus the sliver of the management
// application that reports the form factor), independent of any transport.
// Feed it command APDUs with APDU; tell it about power with PowerOn,
// PowerOff and WarmReset. It is safe for concurrent use; commands are
// processed one at a time, as a card does.
type Card struct {
	mu    sync.Mutex
	path  string // state file; "" for a card kept in memory
	st    *state
	saved []byte // last state written (or loaded), to roll back a failed write
	dirty bool
	vol   volatile

	rand     io.Reader
	now      func() time.Time
	logf     func(format string, args ...any)
	root     *x509.Certificate
	signTime time.Duration
}

// volatile is the session state a card loses on power off or reset.
type volatile struct {
	applet          int
	pinVerified     bool
	pinJustVerified bool // the previous command was a successful VERIFY (PIN policy "always")
	mgmtAuth        bool
	mgmtWitness     []byte // expected witness of a mutual authentication in progress
	mgmtChallenge   []byte // challenge of a single (external) authentication in progress
	chain           *chain
	pending         []byte // response bytes not yet fetched with GET RESPONSE
}

const (
	appletNone = iota
	appletPIV
	appletMgmt
)

// chain accumulates a chained command (ISO/IEC 7816-4 5.1.1.1).
type chain struct {
	ins, p1, p2 byte
	data        []byte
}

// New returns a card kept only in memory.
func New(opts Options) (*Card, error) {
	c := newCard("", opts)
	st, err := c.newState(opts)
	if err != nil {
		return nil, err
	}
	if err := c.install(st); err != nil {
		return nil, err
	}
	if err := c.persist(); err != nil { // records the state to roll back to
		return nil, err
	}
	return c, nil
}

// Open loads the card whose state is in path, or creates it (and the file,
// mode 0600) if path does not exist. Every change is written to path
// atomically before the card answers the command that made it.
func Open(path string, opts Options) (*Card, error) {
	c := newCard(path, opts)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st, err := c.newState(opts)
		if err != nil {
			return nil, err
		}
		if err := c.install(st); err != nil {
			return nil, err
		}
		if err := c.persist(); err != nil {
			return nil, fmt.Errorf("creating virtual YubiKey %s: %w", path, err)
		}
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("reading virtual YubiKey state: %w", err)
	}
	st, err := decodeState(b)
	if err != nil {
		return nil, fmt.Errorf("loading virtual YubiKey %s: %w", path, err)
	}
	if opts.Serial != 0 && opts.Serial != st.Serial {
		return nil, fmt.Errorf("loading virtual YubiKey %s: it has serial %d, options ask for %d", path, st.Serial, opts.Serial)
	}
	if err := c.install(st); err != nil {
		return nil, fmt.Errorf("loading virtual YubiKey %s: %w", path, err)
	}
	c.saved = b
	return c, nil
}

func newCard(path string, opts Options) *Card {
	c := &Card{path: path, rand: opts.Rand, now: opts.Now, logf: opts.Logf, signTime: opts.SignTime}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	return c
}

// install makes st the card's state.
func (c *Card) install(st *state) error {
	root, err := x509.ParseCertificate(st.AttestationRoot)
	if err != nil {
		return fmt.Errorf("parsing attestation root: %w", err)
	}
	c.st, c.root = st, root
	return nil
}

// persist writes the state file (a no-op for in-memory cards).
func (c *Card) persist() error {
	b, err := json.MarshalIndent(c.st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	if c.path != "" {
		if err := writeFileAtomic(c.path, b); err != nil {
			return err
		}
	}
	c.saved = b
	return nil
}

// rollback returns to the last state written, after a failed write.
func (c *Card) rollback() {
	st, err := decodeState(c.saved)
	if err != nil {
		// c.saved was produced by persist or read by Open and decoded
		// before: this cannot fail short of memory corruption.
		panic(fmt.Sprintf("sim: rolling back to the saved state: %v", err))
	}
	c.st = st
}

// Path returns the state file ("" for a card kept in memory).
func (c *Card) Path() string { return c.path }

// Serial returns the card's serial number.
func (c *Card) Serial() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Serial
}

// Version returns the firmware version the card reports.
func (c *Card) Version() [3]byte { return firmware }

// ATR returns the card's answer-to-reset.
func (c *Card) ATR() []byte { return bytes.Clone(atr) }

// AttestationRoot returns the CA certificate that issued the card's
// attestation certificate (slot f9). Attestations the card makes verify
// against it, e.g. with piv.Verifier{Roots: pool}.
func (c *Card) AttestationRoot() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.root
}

// Retries returns the remaining PIN and PUK retries.
func (c *Card) Retries() (pin, puk int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.PINRetriesLeft, c.st.PUKRetriesLeft
}

// PowerOn is the card being powered (vpcd control 0x01): volatile state is
// cleared.
func (c *Card) PowerOn() { c.clearVolatile() }

// PowerOff is the card losing power (vpcd control 0x00): volatile state is
// cleared.
func (c *Card) PowerOff() { c.clearVolatile() }

// WarmReset is a reset signal (vpcd control 0x02): volatile state is
// cleared.
func (c *Card) WarmReset() { c.clearVolatile() }

func (c *Card) clearVolatile() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vol = volatile{}
}

// APDU processes one command APDU and returns the response APDU (data, then
// SW1 SW2). Malformed commands get an error status word, never a panic.
func (c *Card) APDU(cmd []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, sw := c.process(cmd)
	out := make([]byte, 0, len(data)+2)
	out = append(out, data...)
	return append(out, byte(sw>>8), byte(sw))
}

// command is a parsed command APDU (ISO/IEC 7816-3 12.1).
type command struct {
	cla, ins, p1, p2 byte
	data             []byte
	le               int // expected response length; 0 if absent
}

// parseAPDU decodes the four cases of short and extended APDUs
// (ISO/IEC 7816-3 12.1.3).
func parseAPDU(b []byte) (command, uint16) {
	if len(b) < 4 {
		return command{}, swWrongLength
	}
	cmd := command{cla: b[0], ins: b[1], p1: b[2], p2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
	case len(body) == 1: // case 2 short
		cmd.le = int(body[0])
		if cmd.le == 0 {
			cmd.le = 256
		}
	case body[0] != 0: // case 3 or 4 short
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
		case 2 + lc:
			cmd.le = int(body[1+lc])
			if cmd.le == 0 {
				cmd.le = 256
			}
		default:
			return command{}, swWrongLength
		}
		cmd.data = body[1 : 1+lc]
	case len(body) == 3: // case 2 extended
		cmd.le = int(body[1])<<8 | int(body[2])
		if cmd.le == 0 {
			cmd.le = 65536
		}
	case len(body) > 3: // case 3 or 4 extended
		lc := int(body[1])<<8 | int(body[2])
		switch {
		case lc == 0:
			return command{}, swWrongLength
		case len(body) == 3+lc:
		case len(body) == 5+lc:
			cmd.le = int(body[3+lc])<<8 | int(body[4+lc])
		default:
			return command{}, swWrongLength
		}
		cmd.data = body[3 : 3+lc]
	default:
		return command{}, swWrongLength
	}
	return cmd, 0
}

func (c *Card) process(raw []byte) ([]byte, uint16) {
	cmd, sw := parseAPDU(raw)
	if sw != 0 {
		c.vol.pending, c.vol.chain = nil, nil
		return nil, sw
	}
	if cmd.ins == insGetResponse && cmd.cla == 0 {
		return c.getResponse(cmd)
	}
	c.vol.pending = nil
	if cmd.cla&^claChainingFlag != 0 {
		c.vol.chain = nil
		return nil, swClaNotSupported
	}
	if ch := c.vol.chain; ch != nil {
		if ch.ins != cmd.ins || ch.p1 != cmd.p1 || ch.p2 != cmd.p2 {
			c.vol.chain = nil
			if cmd.cla&claChainingFlag == 0 {
				return nil, swLastCmdExpected
			}
		}
	}
	if cmd.cla&claChainingFlag != 0 {
		if c.vol.chain == nil {
			c.vol.chain = &chain{ins: cmd.ins, p1: cmd.p1, p2: cmd.p2}
		}
		if len(c.vol.chain.data)+len(cmd.data) > maxChainedData {
			c.vol.chain = nil
			return nil, swWrongLength
		}
		c.vol.chain.data = append(c.vol.chain.data, cmd.data...)
		return nil, swOK
	}
	if ch := c.vol.chain; ch != nil {
		cmd.data = append(ch.data, cmd.data...)
		c.vol.chain = nil
	}

	before := c.vol
	resp, sw := c.dispatch(cmd)
	if cmd.ins != insVerify {
		c.vol.pinJustVerified = false
	}
	if c.dirty {
		c.dirty = false
		if err := c.persist(); err != nil {
			c.logf("virtual YubiKey %d: %v; the change is undone", c.st.Serial, err)
			c.rollback()
			c.vol = before
			return nil, swMemoryFailure
		}
	}
	if sw != swOK || len(resp) <= maxResponseChunk {
		return resp, sw
	}
	c.vol.pending = resp[maxResponseChunk:]
	return resp[:maxResponseChunk], moreData(len(c.vol.pending))
}

// moreData is SW 61xx: xx more bytes are available (00: 256 or more).
func moreData(n int) uint16 {
	if n > 0xFF {
		n = 0
	}
	return 0x6100 | uint16(n)
}

// getResponse serves the rest of a long response (ISO/IEC 7816-4 7.6.1).
func (c *Card) getResponse(cmd command) ([]byte, uint16) {
	if len(c.vol.pending) == 0 {
		return nil, swConditions
	}
	n := maxResponseChunk
	if cmd.le > 0 && cmd.le < n {
		n = cmd.le
	}
	if n > len(c.vol.pending) {
		n = len(c.vol.pending)
	}
	out := c.vol.pending[:n]
	c.vol.pending = c.vol.pending[n:]
	if len(c.vol.pending) == 0 {
		c.vol.pending = nil
		return out, swOK
	}
	return out, moreData(len(c.vol.pending))
}

func (c *Card) dispatch(cmd command) ([]byte, uint16) {
	if cmd.ins == insSelect {
		return c.selectApplet(cmd)
	}
	switch c.vol.applet {
	case appletMgmt:
		if cmd.ins == insDeviceInfo {
			return c.deviceInfo(cmd)
		}
		return nil, swInsNotSupported
	case appletPIV:
	default:
		return nil, swInsNotSupported
	}
	switch cmd.ins {
	case insVerify:
		return c.verify(cmd)
	case insChangeRef:
		return c.changeReference(cmd)
	case insResetRetry:
		return c.resetRetryCounter(cmd)
	case insGenerate:
		return c.generate(cmd)
	case insGeneralAuth:
		return c.generalAuthenticate(cmd)
	case insGetData:
		return c.getData(cmd)
	case insPutData:
		return c.putData(cmd)
	case insGetMetadata:
		return c.metadata(cmd)
	case insGetSerial:
		return c.getSerial(cmd)
	case insAttest:
		return c.attest(cmd)
	case insSetRetries:
		return c.setRetries(cmd)
	case insReset:
		return c.reset(cmd)
	case insGetVersion:
		return c.getVersion(cmd)
	case insImportKey:
		return c.importKey(cmd)
	case insSetMgmtKey:
		return c.setManagementKey(cmd)
	}
	return nil, swInsNotSupported
}
