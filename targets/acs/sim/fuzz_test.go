package sim

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// yBlock is a YMODEM block as a sender writes it (CRC-16 mode).
func yBlock(num byte, payload []byte) []byte {
	n, kind := 1024, byte(ySTX)
	if len(payload) <= 128 {
		n, kind = 128, ySOH
	}
	data := make([]byte, n)
	copy(data, payload)
	crc := crc16(data)
	return append(append([]byte{kind, num, ^num}, data...), byte(crc>>8), byte(crc))
}

// withBlockCRCs walks the stream as the receiver frames it and rewrites each block's CRC so
// that it holds: the fuzzer then reaches what lies behind the CRC check.
func withBlockCRCs(s []byte) []byte {
	s = append([]byte(nil), s...)
	for i := 0; i < len(s); {
		n := map[byte]int{ySOH: 128, ySTX: 1024}[s[i]]
		if n == 0 || i+n+5 > len(s) {
			i++
			continue
		}
		crc := crc16(s[i+3 : i+3+n])
		s[i+3+n], s[i+4+n] = byte(crc>>8), byte(crc)
		i += n + 5
	}
	return s
}

// goodYStream is a whole batch of one file: header, a 1024- and a 1024-byte block (the last
// padded), EOT twice, the empty header.
func goodYStream() (payload, stream []byte) {
	payload = bytes.Repeat([]byte("firmware"), 200)
	stream = yBlock(0, []byte("fw.bin\x00"+strconv.Itoa(len(payload))+" 14571234567\x00"))
	stream = append(stream, yBlock(1, payload[:1024])...)
	stream = append(stream, yBlock(2, payload[1024:])...)
	stream = append(stream, yEOT, yEOT)
	return payload, append(stream, yBlock(0, nil)...)
}

// TestBootROMReceiveStream: the fuzz target's harness receives a whole batch.
func TestBootROMReceiveStream(t *testing.T) {
	t.Parallel()
	payload, stream := goodYStream()
	quit := make(chan struct{})
	close(quit)
	dir := t.TempDir()
	b := &bootloader{d: &Device{l: layout{faults: dir}}, in: make(chan []byte), quit: quit, pending: stream}
	res, err := b.receive(filepath.Join(dir, "slot"))
	if err != nil || res.name != "fw.bin" || res.size != int64(len(payload)) {
		t.Fatalf("receive = %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "slot")); !bytes.Equal(got, payload) {
		t.Fatalf("slot holds %d bytes", len(got))
	}
}

// FuzzBootROMReceive: the boot ROM's YMODEM receiver, given any bytes from the sender, returns
// (the line going quiet counts as a power cut here, so nothing waits), and a file it reports
// received is on disk with the size and SHA-256 it reports, never more than the header's size.
func FuzzBootROMReceive(f *testing.F) {
	payload, good := goodYStream()
	f.Add(good, false)
	f.Add(good[:700], false)
	f.Add(append(append([]byte{}, good[:133]...), yBlock(1, payload[:100])...), true) // header, block 1 again
	f.Add(append(yBlock(0, []byte("x\x00-5\x00")), yBlock(2, nil)...), false)
	f.Add(append(yBlock(0, []byte("x")), yCAN, yCAN), false)
	f.Add([]byte("noise\x01\x00\xff"), true)
	dir := f.TempDir()
	d := &Device{l: layout{faults: filepath.Join(dir, "faults")}} // unpowered: answers go nowhere
	quit := make(chan struct{})
	close(quit)
	f.Fuzz(func(t *testing.T, stream []byte, fixCRC bool) {
		if len(stream) > 256<<10 {
			t.Skip()
		}
		if fixCRC {
			stream = withBlockCRCs(stream)
		}
		b := &bootloader{d: d, in: make(chan []byte), quit: quit, pending: stream, lastRx: time.Now()}
		path := filepath.Join(dir, "slot")
		_ = os.Remove(path)
		start := time.Now()
		res, err := b.receive(path)
		if time.Since(start) > 5*time.Second {
			t.Fatalf("receive took %v", time.Since(start))
		}
		if err != nil {
			if !errors.Is(err, errPowerCut) && res.sum != nil {
				t.Fatalf("receive failed (%v) with a result %+v", err, res)
			}
			return
		}
		data, rerr := os.ReadFile(path)
		if rerr != nil {
			t.Fatalf("receive reported %q but: %v", res.name, rerr)
		}
		sum := sha256.Sum256(data)
		if int64(len(data)) != res.size || !bytes.Equal(sum[:], res.sum) {
			t.Fatalf("receive reported %d bytes %x; the slot holds %d bytes %x", res.size, res.sum, len(data), sum)
		}
		// The header's size, when it gave one, bounds what is written.
		if i := bytes.IndexByte(stream, 0); i >= 0 && len(stream) > 3 {
			if n := map[byte]int{ySOH: 128, ySTX: 1024}[stream[0]]; n > 0 && len(stream) >= n+5 {
				if _, size := parseHeader(stream[3 : 3+n]); size >= 0 && res.size > size {
					t.Fatalf("header says %d bytes, %d written", size, res.size)
				}
			}
		}
	})
}
