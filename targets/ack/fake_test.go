package ack_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeModule is a tiny HA1 module for the tests, written from PROTOCOL.md with its own encoder
// and parser (nothing from the driver), so a driver bug cannot hide behind shared code.
type fakeModule struct {
	t    *testing.T
	conn net.Conn

	mu           sync.Mutex
	dialect      string // what it puts in its frames; default HA1
	textOnly     bool   // prints log lines only
	silent       bool   // reads, never answers (until powerCycle)
	curve        elliptic.Curve
	maxChunk     int
	key          *ecdsa.PrivateKey
	cert         []byte
	csr          []byte
	staging      []byte
	stageLen     int
	stageSum     string
	lastKey      string // seq|crc of the last executed request
	lastAns      string
	executed     map[string]int // seq|crc -> times executed
	verbs        []string       // verbs executed, in order
	received     int            // well-formed requests received
	corruptCert  bool           // READ area=cert returns a flipped bit
	noRestart    bool           // REBOOT/FACTORY_RESET answered, no restart
	restartAfter bool           // REBOOT/FACTORY_RESET: BOOT follows the answer
	// act decides what happens to the n-th well-formed request (1-based); nil: answer normally.
	act func(n int, verb string) action
}

type action int

const (
	actNormal         action = iota
	actDrop                  // request lost on the line: no answer, not executed
	actNAK                   // request arrived damaged
	actGarble                // executed, answer damaged on the line
	actDropAnswer            // executed, answer lost
	actRebootFirst           // reset before executing: BOOT only
	actRebootAfter           // executed, then reset before answering: BOOT only
	actSilence               // falls silent (until powerCycle), request not executed
	actBadDialect            // answers with an HA2 frame
	actForeignShape          // answers with a line naming HA2 in a shape that cannot be checked
	actAnswerThenBoot        // executed and answered, then a reset
)

func newFake(t *testing.T) (*fakeModule, net.Conn) {
	host, mod := net.Pipe()
	f := &fakeModule{t: t, conn: mod, dialect: "HA1", curve: elliptic.P256(), maxChunk: 200, executed: map[string]int{}}
	t.Cleanup(func() { host.Close(); mod.Close() })
	go f.serve()
	return f, host
}

func (f *fakeModule) send(s string) { f.conn.Write([]byte(s)) }

// frame builds a frame line by hand.
func (f *fakeModule) frame(dialect, seq, verb string, payload []byte) string {
	body := fmt.Sprintf("%s|%s|%s|%s|", dialect, seq, verb, base64.StdEncoding.EncodeToString(payload))
	return fmt.Sprintf("!%s%08X\r\n", body, crc32.ChecksumIEEE([]byte(body)))
}

func (f *fakeModule) state() string {
	switch {
	case f.key == nil:
		return "blank"
	case f.cert == nil:
		return "keyed"
	}
	return "provisioned"
}

func (f *fakeModule) boot() string {
	f.staging, f.stageLen, f.csr, f.lastKey, f.lastAns = nil, 0, nil, "", ""
	return f.frame(f.dialect, "00", "BOOT", []byte("dsn=G0X1234\nfw=1.0\nstate="+f.state()+"\n"))
}

// powerCycle is the test's power switch.
func (f *fakeModule) powerCycle() {
	f.mu.Lock()
	f.silent = false
	b := f.boot()
	f.mu.Unlock()
	f.send("power on, booting\r\n" + b)
}

func (f *fakeModule) serve() {
	r := bufio.NewReader(f.conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if out := f.handle(strings.TrimRight(line, "\r\n")); out != "" {
			f.send(out)
		}
	}
}

func (f *fakeModule) handle(line string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.silent {
		return ""
	}
	if f.textOnly {
		return "I (1234) ack: unknown command, type help\r\n"
	}
	i := strings.LastIndex(line, "!HA")
	if i < 0 {
		return ""
	}
	fields := strings.Split(line[i+1:], "|")
	if len(fields) != 5 {
		return f.frame(f.dialect, "00", "NAK", nil)
	}
	body := strings.Join(fields[:4], "|") + "|"
	if fmt.Sprintf("%08X", crc32.ChecksumIEEE([]byte(body))) != fields[4] {
		return f.frame(f.dialect, "00", "NAK", nil)
	}
	seq, verb := fields[1], fields[2]
	payload, err := base64.StdEncoding.DecodeString(fields[3])
	if err != nil {
		return f.frame(f.dialect, seq, "NAK", nil)
	}
	f.received++
	act := actNormal
	if f.act != nil {
		act = f.act(f.received, verb)
	}
	switch act {
	case actDrop:
		return ""
	case actNAK:
		return f.frame(f.dialect, seq, "NAK", nil)
	case actRebootFirst:
		return f.boot()
	case actSilence:
		f.silent = true
		return ""
	case actBadDialect:
		return f.frame("HA2", seq, "OK", nil)
	case actForeignShape:
		return "!HA2|" + seq + "|v2\r\n"
	}
	key := seq + "|" + fields[4]
	var ans string
	if key == f.lastKey {
		ans = f.lastAns // a repeat: answer again, do not execute again
	} else {
		f.executed[key]++
		f.verbs = append(f.verbs, verb)
		ans = f.execute(seq, verb, payload)
		f.lastKey, f.lastAns = key, ans
		if f.restartAfter {
			f.restartAfter = false
			ans += "I (99) restarting\r\n" + f.boot()
		}
	}
	switch act {
	case actGarble:
		b := []byte(ans)
		b[len(b)-5] ^= 0x01 // a bit flip inside the CRC digits
		return string(b)
	case actDropAnswer:
		return ""
	case actRebootAfter:
		return f.boot()
	case actAnswerThenBoot:
		return ans + f.boot()
	}
	return ans
}

func (f *fakeModule) ok(seq string, payload []byte) string {
	return f.frame(f.dialect, seq, "OK", payload)
}
func (f *fakeModule) err(seq, code string, extra ...string) string {
	p := "code=" + code + "\nmsg=fake refuses\n" + strings.Join(extra, "")
	return f.frame(f.dialect, seq, "ERR", []byte(p))
}

func text(p []byte) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func hexSHA(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func (f *fakeModule) execute(seq, verb string, p []byte) string {
	switch verb {
	case "HELLO":
		sum := ""
		if f.cert != nil {
			sum = hexSHA(f.cert)
		}
		return f.ok(seq, []byte(fmt.Sprintf("dialect=HA1\nmodule=ACK-SIM-MW1\ndsn=G0X1234\nfw=1.0\nstate=%s\ncert_sha256=%s\nmax_chunk=%d\n", f.state(), sum, f.maxChunk)))
	case "KEYGEN":
		if f.cert != nil && text(p)["force"] != "1" {
			return f.err(seq, "state")
		}
		k, err := ecdsa.GenerateKey(f.curve, rand.Reader)
		if err != nil {
			panic(err)
		}
		f.key, f.cert, f.staging, f.stageLen = k, nil, nil, 0
		return f.ok(seq, nil)
	case "CSR":
		if f.key == nil {
			return f.err(seq, "no_key")
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: p, SignatureAlgorithm: x509.ECDSAWithSHA256}, f.key)
		if err != nil {
			return f.err(seq, "bad_request")
		}
		f.csr = der
		return f.ok(seq, []byte(fmt.Sprintf("len=%d\nsha256=%s\n", len(der), hexSHA(der))))
	case "READ":
		m := text(p)
		area := map[string][]byte{"csr": f.csr, "cert": f.cert}[m["area"]]
		off, _ := strconv.Atoi(m["off"])
		n, _ := strconv.Atoi(m["len"])
		if n > f.maxChunk || n < 0 {
			return f.err(seq, "bad_request")
		}
		if off > len(area) || (off == len(area) && off > 0) || area == nil {
			return f.err(seq, "range")
		}
		end := min(off+n, len(area))
		out := binary.BigEndian.AppendUint32(nil, uint32(off))
		out = append(out, area[off:end]...)
		if f.corruptCert && m["area"] == "cert" && end > off {
			out[len(out)-1] ^= 0x20 // a flash bit gone bad
		}
		return f.ok(seq, out)
	case "BEGIN":
		m := text(p)
		f.stageLen, _ = strconv.Atoi(m["len"])
		f.stageSum, f.staging = m["sha256"], []byte{}
		return f.ok(seq, nil)
	case "DATA":
		if f.staging == nil {
			return f.err(seq, "state")
		}
		off := int(binary.BigEndian.Uint32(p))
		if off != len(f.staging) {
			return f.err(seq, "offset", fmt.Sprintf("next=%d\n", len(f.staging)))
		}
		f.staging = append(f.staging, p[4:]...)
		return f.ok(seq, []byte(fmt.Sprintf("next=%d\n", len(f.staging))))
	case "COMMIT":
		if f.staging == nil || len(f.staging) != f.stageLen || hexSHA(f.staging) != f.stageSum {
			return f.err(seq, "digest")
		}
		b, _ := pem.Decode(f.staging)
		if b == nil {
			return f.err(seq, "format")
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return f.err(seq, "format")
		}
		if !f.key.PublicKey.Equal(c.PublicKey) {
			return f.err(seq, "key_mismatch")
		}
		f.cert = bytes.Clone(f.staging)
		f.staging = nil
		return f.ok(seq, []byte("sha256="+hexSHA(f.cert)+"\n"))
	case "REBOOT", "FACTORY_RESET":
		f.restartAfter = !f.noRestart
		return f.ok(seq, nil)
	}
	return f.err(seq, "unknown_verb")
}

// executedTwice lists requests the fake executed more than once.
func (f *fakeModule) executedTwice() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var twice []string
	for k, n := range f.executed {
		if n > 1 {
			twice = append(twice, k)
		}
	}
	return twice
}

func (f *fakeModule) verbCount(verb string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.verbs {
		if v == verb {
			n++
		}
	}
	return n
}

func (f *fakeModule) setAct(a func(n int, verb string) action) {
	f.mu.Lock()
	f.act = a
	f.mu.Unlock()
}
