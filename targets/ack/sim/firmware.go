package sim

import (
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
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runState is the firmware's RAM: lost at every power cut or reset.
type runState struct {
	m    *Module
	gen  uint64
	in   chan []byte
	quit chan struct{}

	line     []byte
	lastSeq  string
	lastCRC  string
	lastAns  string
	csr      []byte
	staged   []byte
	stageLen int
	stageSum string
	uploaded int       // DATA payload bytes since boot, for PowerCut "upload"
	lineAt   time.Time // when the line being answered ended; zero once answered
}

// send puts s on the line. The first send after a received line ends the module's work on it:
// the time since the line ended is processing time.
func (r *runState) send(s string) {
	if !r.lineAt.IsZero() {
		d := time.Since(r.lineAt)
		r.lineAt = time.Time{}
		r.m.mu.Lock()
		r.m.stats.Processing += d
		r.m.mu.Unlock()
	}
	r.m.sendRaw([]byte(s), r.gen)
}

func (r *runState) frame(seq, verb string, payload []byte) string {
	body := r.m.cfg.Dialect + "|" + seq + "|" + verb + "|" + base64.StdEncoding.EncodeToString(payload) + "|"
	return fmt.Sprintf("!%s%08X\r\n", body, crc32.ChecksumIEEE([]byte(body)))
}

func (r *runState) sendFrame(seq, verb string, payload []byte) string {
	f := r.frame(seq, verb, payload)
	r.send(f)
	return f
}

func (r *runState) stopped() bool {
	select {
	case <-r.quit:
		return true
	default:
		return false
	}
}

func (r *runState) loop() {
	defer r.m.wg.Done()
	for {
		select {
		case <-r.quit:
			return
		case p := <-r.in:
			for _, b := range p {
				if b == '\n' {
					line := strings.TrimSuffix(string(r.line), "\r")
					r.line = r.line[:0]
					r.lineAt = time.Now()
					r.handleLine(line)
					r.lineAt = time.Time{} // no answer (noise, a power cut): not the module's work
					if r.stopped() {
						return
					}
					continue
				}
				if len(r.line) < 4096 {
					r.line = append(r.line, b)
				}
			}
		}
	}
}

func encodeText(kv ...string) []byte {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString(kv[i] + "=" + kv[i+1] + "\n")
	}
	return []byte(b.String())
}

func parseText(p []byte) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(string(p), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			out[k] = v
		}
	}
	return out
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// handleLine answers one received line.
func (r *runState) handleLine(line string) {
	m := r.m
	if m.faultOn(FaultTextOnly) {
		if strings.TrimSpace(line) != "" {
			r.send("ERROR: unknown command\r\n")
		}
		return
	}
	i := strings.LastIndex(line, "!HA")
	if i < 0 {
		return // not for the dialect: a console would echo or ignore it
	}
	f := line[i+1:]
	m.mu.Lock()
	m.stats.FramesReceived++
	m.mu.Unlock()
	parts := strings.Split(f, "|")
	seq := "00"
	if len(parts) >= 2 && isHex(parts[1], 2) {
		seq = parts[1]
	}
	nak := func() {
		m.mu.Lock()
		m.stats.Damaged++
		m.stats.NAKsSent++
		m.mu.Unlock()
		r.sendFrame(seq, "NAK", nil)
	}
	if len(f)+1 > 1024 || len(parts) != 5 || !isHex(parts[1], 2) || !isHex(parts[4], 8) {
		nak()
		return
	}
	body := f[:strings.LastIndex(f, "|")+1]
	if fmt.Sprintf("%08X", crc32.ChecksumIEEE([]byte(body))) != parts[4] {
		nak()
		return
	}
	verb := parts[2]
	if len(verb) < 1 || len(verb) > 16 || strings.Trim(verb, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != "" {
		nak()
		return
	}
	payload, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil || len(payload) > 700 {
		nak()
		return
	}
	if seq == r.lastSeq && parts[4] == r.lastCRC && r.lastAns != "" {
		m.mu.Lock()
		m.stats.Duplicates++
		m.mu.Unlock()
		r.send(r.lastAns)
		return
	}
	var after func()
	var ans string
	if parts[0] != m.cfg.Dialect {
		ans = r.frame(seq, "ERR", encodeText("code", "dialect", "msg", "this module speaks "+m.cfg.Dialect))
	} else {
		verbOK, out, errCode, errMsg, next := r.execute(verb, payload)
		if r.stopped() {
			return // the power went while it ran
		}
		after = next
		if verbOK {
			ans = r.frame(seq, "OK", out)
		} else {
			ans = r.frame(seq, "ERR", append(encodeText("code", errCode, "msg", errMsg), out...))
		}
	}
	r.lastSeq, r.lastCRC, r.lastAns = seq, parts[4], ans
	r.send(ans)
	if after != nil {
		after()
	}
}

// state is blank, keyed or provisioned, from persistent storage.
func (m *Module) state() string {
	if _, err := os.Stat(m.CertPath()); err == nil {
		return "provisioned"
	}
	if _, err := os.Stat(m.KeyPath()); err == nil {
		return "keyed"
	}
	return "blank"
}

func (m *Module) key() (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(m.KeyPath())
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("key store damaged")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key store holds a %T", k)
	}
	return ek, nil
}

// writeAtomic replaces path with data: temp file, fsync, rename, fsync of the directory.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// execute runs a verb: ok, answer payload, error code and message, and what to do after answering.
func (r *runState) execute(verb string, p []byte) (bool, []byte, string, string, func()) {
	m := r.m
	fail := func(code, msg string) (bool, []byte, string, string, func()) { return false, nil, code, msg, nil }
	ok := func(out []byte) (bool, []byte, string, string, func()) { return true, out, "", "", nil }
	if m.takeBusy(verb) {
		return fail("busy", "flash write in progress")
	}
	switch verb {
	case "HELLO":
		sum := ""
		if c, err := os.ReadFile(m.CertPath()); err == nil {
			s := sha256.Sum256(c)
			sum = hex.EncodeToString(s[:])
		}
		return ok(encodeText("dialect", m.cfg.Dialect, "module", m.cfg.Module, "dsn", m.cfg.DSN, "fw", m.cfg.Firmware,
			"state", m.state(), "cert_sha256", sum, "max_chunk", strconv.Itoa(maxChunk)))
	case "KEYGEN":
		force := parseText(p)["force"] == "1"
		if m.state() == "provisioned" && !force {
			return fail("state", "a certificate is stored; KEYGEN force=1 replaces it")
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fail("busy", err.Error())
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		if force {
			if err := os.Remove(m.CertPath()); err != nil && !os.IsNotExist(err) {
				return fail("busy", err.Error())
			}
		}
		if err := writeAtomic(m.KeyPath(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return fail("busy", err.Error())
		}
		r.csr, r.staged, r.stageLen = nil, nil, 0
		return ok(nil)
	case "CSR":
		k, err := m.key()
		if err != nil {
			return fail("no_key", "no key: KEYGEN first")
		}
		signer := any(k)
		if m.faultOn(FaultBadCSRCurve) {
			signer, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		}
		tmpl := &x509.CertificateRequest{RawSubject: p}
		if m.faultOn(FaultBadCSRCurve) {
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA384
		} else {
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
		if err != nil {
			return fail("bad_request", "subject: "+err.Error())
		}
		r.csr = der
		s := sha256.Sum256(der)
		return ok(encodeText("len", strconv.Itoa(len(der)), "sha256", hex.EncodeToString(s[:])))
	case "READ":
		t := parseText(p)
		off, err1 := strconv.Atoi(t["off"])
		n, err2 := strconv.Atoi(t["len"])
		if err1 != nil || err2 != nil || off < 0 || n < 1 || n > maxChunk {
			return fail("bad_request", "want area, off and len (1.."+strconv.Itoa(maxChunk)+")")
		}
		var area []byte
		switch t["area"] {
		case "csr":
			if r.csr == nil {
				return fail("state", "no CSR: send CSR first")
			}
			area = r.csr
		case "cert":
			c, err := os.ReadFile(m.CertPath())
			if err != nil {
				return fail("state", "no certificate stored")
			}
			area = c
		default:
			return fail("bad_request", "unknown area "+strconv.Quote(t["area"]))
		}
		if off > len(area) {
			return fail("range", fmt.Sprintf("offset %d is past the end (%d)", off, len(area)))
		}
		end := min(off+n, len(area))
		out := binary.BigEndian.AppendUint32(nil, uint32(off))
		return ok(append(out, area[off:end]...))
	case "BEGIN":
		t := parseText(p)
		n, err := strconv.Atoi(t["len"])
		if err != nil || n < 1 || n > 8192 || len(t["sha256"]) != 64 {
			return fail("bad_request", "want len (1..8192) and sha256")
		}
		r.staged, r.stageLen, r.stageSum = make([]byte, 0, n), n, strings.ToLower(t["sha256"])
		return ok(nil)
	case "DATA":
		if r.staged == nil {
			return fail("state", "no upload: BEGIN first")
		}
		if len(p) < 4 || len(p)-4 > maxChunk {
			return fail("bad_request", "want a 4-byte offset and 1.."+strconv.Itoa(maxChunk)+" bytes")
		}
		off := int(binary.BigEndian.Uint32(p))
		if off != len(r.staged) {
			return false, encodeText("next", strconv.Itoa(len(r.staged))), "offset", fmt.Sprintf("expected offset %d", len(r.staged)), nil
		}
		if off+len(p)-4 > r.stageLen {
			return fail("bad_request", "more bytes than BEGIN announced")
		}
		for _, b := range p[4:] {
			r.uploaded++
			if r.cutAt("upload", r.uploaded) {
				return fail("busy", "power lost")
			}
			r.staged = append(r.staged, b)
		}
		return ok(encodeText("next", strconv.Itoa(len(r.staged))))
	case "COMMIT":
		return r.commit()
	case "REBOOT", "FACTORY_RESET":
		wipe := verb == "FACTORY_RESET"
		return true, nil, "", "", func() {
			if wipe {
				entries, _ := os.ReadDir(m.UserDataDir())
				for _, e := range entries {
					_ = os.RemoveAll(filepath.Join(m.UserDataDir(), e.Name()))
				}
			}
			m.mu.Lock()
			if m.gen == r.gen {
				m.restartLocked()
			}
			m.mu.Unlock()
		}
	}
	return fail("unknown_verb", "unknown verb "+verb)
}

// cutAt cuts the power when an armed cut for phase is reached.
func (r *runState) cutAt(phase string, n int) bool {
	m := r.m
	m.mu.Lock()
	c := m.cut
	hit := c != nil && c.Phase == phase && n >= c.AtByte
	if hit {
		m.cut = nil
	}
	m.mu.Unlock()
	if hit {
		m.logf("power cut during %s at byte %d", phase, n)
		m.powerCut(c.RestoreAfter)
	}
	return hit
}

func (r *runState) commit() (bool, []byte, string, string, func()) {
	m := r.m
	fail := func(code, msg string) (bool, []byte, string, string, func()) { return false, nil, code, msg, nil }
	if r.staged == nil {
		return fail("state", "no upload: BEGIN first")
	}
	if len(r.staged) != r.stageLen {
		return fail("digest", fmt.Sprintf("have %d of %d bytes", len(r.staged), r.stageLen))
	}
	sum := sha256.Sum256(r.staged)
	if hex.EncodeToString(sum[:]) != r.stageSum {
		return fail("digest", "SHA-256 of the upload differs from BEGIN's")
	}
	block, _ := pem.Decode(r.staged)
	if block == nil || block.Type != "CERTIFICATE" {
		return fail("format", "not a PEM certificate chain")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fail("format", err.Error())
	}
	k, err := m.key()
	if err != nil {
		return fail("no_key", "no key")
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&k.PublicKey) {
		return fail("key_mismatch", "the certificate does not hold this module's key")
	}
	// The certificate area is written at flash speed into a temp file; only a whole write is
	// renamed over the old one.
	tmp := m.CertPath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fail("busy", err.Error())
	}
	const page = 64
	perPage := time.Duration(page) * time.Second / time.Duration(m.cfg.FlashWriteRate)
	for off := 0; off < len(r.staged); off += page {
		end := min(off+page, len(r.staged))
		for n := off + 1; n <= end; n++ {
			if r.cutAt("commit", n) {
				_, _ = f.Write(r.staged[off : n-1]) // the torn page as far as it got
				f.Close()
				return fail("busy", "power lost")
			}
		}
		if _, err := f.Write(r.staged[off:end]); err != nil {
			f.Close()
			return fail("busy", err.Error())
		}
		time.Sleep(perPage)
		if r.stopped() {
			f.Close()
			return fail("busy", "power lost")
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fail("busy", err.Error())
	}
	f.Close()
	if err := os.Rename(tmp, m.CertPath()); err != nil {
		return fail("busy", err.Error())
	}
	if d, err := os.Open(m.cfg.Dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	m.mu.Lock()
	m.stats.Commits++
	m.mu.Unlock()
	r.staged = nil
	return true, encodeText("sha256", hex.EncodeToString(sum[:])), "", "", nil
}
