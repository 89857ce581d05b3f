package flash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ihexRecord builds one record the way the format defines it (independent of the parser).
func hexRecord(typ byte, addr uint16, data []byte) string {
	sum := byte(len(data)) + byte(addr>>8) + byte(addr) + typ
	var b strings.Builder
	fmt.Fprintf(&b, ":%02X%04X%02X", len(data), addr, typ)
	for _, c := range data {
		fmt.Fprintf(&b, "%02X", c)
		sum += c
	}
	fmt.Fprintf(&b, "%02X\n", byte(-sum))
	return b.String()
}

func TestIntelHex(t *testing.T) {
	// Extended linear address 0x0800, data at 0x08000000 and 0x08000010 with a 4-byte gap.
	hex := hexRecord(4, 0, []byte{0x08, 0x00}) +
		hexRecord(0, 0x0000, []byte{1, 2, 3, 4}) +
		hexRecord(0, 0x0008, []byte{5, 6}) +
		hexRecord(5, 0, []byte{0x08, 0x00, 0x01, 0x01}) +
		hexRecord(1, 0, nil)
	img, err := Load(writeFile(t, "fw.hex", []byte(hex)), "")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := []byte{1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 5, 6}
	if img.Format != FormatIHex || img.BaseAddress != 0x08000000 || !bytes.Equal(img.Data, want) || !img.HasEntry || img.Entry != 0x08000101 {
		t.Errorf("image %+v data % x", img, img.Data)
	}
	if !strings.Contains(img.Summary(), "10 bytes") {
		t.Errorf("summary %q", img.Summary())
	}

	bad := strings.Replace(hex, hexRecord(0, 0x0008, []byte{5, 6}), ":020008000506EE\n", 1) // wrong checksum
	if _, err := Load(writeFile(t, "bad.hex", []byte(bad)), ""); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("bad checksum: %v, want an error naming line 3", err)
	}
	noEOF := strings.TrimSuffix(hex, hexRecord(1, 0, nil))
	if _, err := Load(writeFile(t, "cut.hex", []byte(noEOF)), ""); err == nil {
		t.Error("a file without its EOF record loaded")
	}
	overlap := hexRecord(0, 0, []byte{1, 2}) + hexRecord(0, 1, []byte{3}) + hexRecord(1, 0, nil)
	if _, err := Load(writeFile(t, "overlap.hex", []byte(overlap)), ""); err == nil {
		t.Error("overlapping records loaded")
	}
	// objcopy, when present, is an independent writer of the format.
	if objcopy, err := exec.LookPath("objcopy"); err == nil {
		raw := bytes.Repeat([]byte("hilbench"), 5000)
		in := writeFile(t, "in.bin", raw)
		out := filepath.Join(t.TempDir(), "out.hex")
		if b, err := exec.Command(objcopy, "-I", "binary", "-O", "ihex", "--change-addresses", "0x08000000", in, out).CombinedOutput(); err != nil {
			t.Fatalf("objcopy: %v %s", err, b)
		}
		img, err := Load(out, "")
		if err != nil || !bytes.Equal(img.Data, raw) || img.BaseAddress != 0x08000000 {
			t.Errorf("objcopy's hex: %v base %#x len %d", err, img.BaseAddress, len(img.Data))
		}
	}
}

func TestDFUSuffixAgreesWithDfuUtil(t *testing.T) {
	fw := bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, 1000)
	ours := AppendDFUSuffix(fw, 0x0483, 0xdf11, 0x0200)
	path := writeFile(t, "ours.dfu", ours)
	img, err := Load(path, "")
	if err != nil || !bytes.Equal(img.Data, fw) || img.Format != FormatDFU {
		t.Fatalf("Load(our .dfu): %v", err)
	}
	if err := img.CheckDFUID(0x0483, 0xdf11); err != nil {
		t.Errorf("CheckDFUID(own ids): %v", err)
	}
	if err := img.CheckDFUID(0x1209, 0x0001); err == nil || !strings.Contains(err.Error(), "0483") {
		t.Errorf("CheckDFUID(other device) = %v", err)
	}
	broken := append([]byte(nil), ours...)
	broken[10] ^= 1
	if _, err := Load(writeFile(t, "broken.dfu", broken), ""); err == nil {
		t.Error("a .dfu with a wrong CRC loaded")
	}
	if _, err := Load(writeFile(t, "short.dfu", ours[:8]), ""); err == nil {
		t.Error("a truncated .dfu loaded")
	}
	tool, err := exec.LookPath("dfu-suffix")
	if err != nil {
		t.Skip("dfu-suffix (dfu-util) not installed")
	}
	if out, err := exec.Command(tool, "-c", path).CombinedOutput(); err != nil {
		t.Errorf("dfu-suffix -c rejects our suffix: %v %s", err, out)
	}
	theirs := writeFile(t, "theirs.dfu", fw)
	if out, err := exec.Command(tool, "-v", "1209", "-p", "0001", "-a", theirs).CombinedOutput(); err != nil {
		t.Fatalf("dfu-suffix -a: %v %s", err, out)
	}
	img, err = Load(theirs, "")
	if err != nil || !bytes.Equal(img.Data, fw) || img.CheckDFUID(0x1209, 0x0001) != nil {
		t.Errorf("Load(dfu-suffix's .dfu): %v", err)
	}
}

func TestImageChecks(t *testing.T) {
	img, err := Load(writeFile(t, "fw.bin", make([]byte, 5000)), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := img.CheckFits(4096); err == nil || !strings.Contains(err.Error(), "5000") || !strings.Contains(err.Error(), "4096") {
		t.Errorf("CheckFits = %v", err)
	}
	if err := img.CheckFits(8192); err != nil {
		t.Errorf("CheckFits(8192) = %v", err)
	}
	if _, err := Load(writeFile(t, "empty.bin", nil), ""); err == nil {
		t.Error("an empty image loaded")
	}
}

func TestSenderRetransmitsOnNAKAndStopsOnCancel(t *testing.T) {
	t.Parallel()
	// The scripted receiver answers at once; the block timeout only has to outlast a loaded machine.
	const answerTimeout = 300 * time.Millisecond
	run := func(blockTimeout time.Duration, script func(r *io.PipeReader, w *io.PipeWriter)) (Stats, error) {
		sr, rw := io.Pipe() // receiver -> sender
		rr, sw := io.Pipe() // sender -> receiver
		go func() {
			script(rr, rw)
			rw.Close()
			rr.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return SendYModem(ctx, struct {
			io.Reader
			io.Writer
		}{sr, sw}, "fw.bin", bytes.Repeat([]byte{7}, 3000), YModemOptions{BlockTimeout: blockTimeout})
	}
	readBlock := func(r io.Reader) []byte {
		h := make([]byte, 1)
		io.ReadFull(r, h)
		n := 128
		switch h[0] {
		case 0x02:
			n = 1024
		case 0x04:
			return h
		}
		rest := make([]byte, n+4)
		io.ReadFull(r, rest)
		return append(h, rest...)
	}
	// NAK every data block once: each is sent twice, the file arrives.
	st, err := run(answerTimeout, func(r *io.PipeReader, w *io.PipeWriter) {
		w.Write([]byte{'C'})
		readBlock(r)
		w.Write([]byte{0x06, 'C'})
		for range 3 {
			readBlock(r)
			w.Write([]byte{0x15})
			readBlock(r)
			w.Write([]byte{0x06})
		}
		readBlock(r) // EOT
		w.Write([]byte{0x15})
		readBlock(r)
		w.Write([]byte{0x06, 'C'})
		readBlock(r)
		w.Write([]byte{0x06})
	})
	if err != nil || st.Retransmits != 3 || st.NAKs != 3 || st.Bytes != 3000 {
		t.Errorf("NAK once per block: %+v, %v", st, err)
	}
	// CAN CAN in the middle: the sender stops with ErrReceiverCancelled.
	_, err = run(answerTimeout, func(r *io.PipeReader, w *io.PipeWriter) {
		w.Write([]byte{'C'})
		readBlock(r)
		w.Write([]byte{0x06, 'C'})
		readBlock(r)
		w.Write([]byte{0x18, 0x18})
	})
	if !errors.Is(err, ErrReceiverCancelled) {
		t.Errorf("CAN CAN: %v", err)
	}
	// A receiver that stops answering: the sender gives up, naming the block. How long it
	// waits per try is not under test: 11 tries of 20 ms.
	_, err = run(20*time.Millisecond, func(r *io.PipeReader, w *io.PipeWriter) {
		w.Write([]byte{'C'})
		readBlock(r)
		w.Write([]byte{0x06, 'C'})
		io.Copy(io.Discard, r) // silent until the sender is gone
	})
	if err == nil || !strings.Contains(err.Error(), "block 1") {
		t.Errorf("silent receiver: %v", err)
	}
}
