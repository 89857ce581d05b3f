package console

import (
	"bytes"
	"io"
	"regexp"
	"testing"
)

func TestRawHandsOverTheLineAndGivesItBack(t *testing.T) {
	toHost, fromHost := newBufPipe(), newBufPipe()
	t.Cleanup(func() { toHost.Close(); fromHost.Close() })
	var tr bytes.Buffer
	c := New(struct {
		io.Reader
		io.Writer
	}{toHost, fromHost}, Options{Name: "dut1", Transcript: NewTranscript(&tr, nil)})
	defer c.Close()
	ctx := ctxT(t)

	toHost.Write([]byte("loady text before raw\n=> loady\n"))
	if _, err := c.Expect(ctx, regexp.MustCompile(`before raw`)); err != nil {
		t.Fatal(err)
	}
	binary := []byte{0x02, 0x01, 0xfe, 0x00, 0x1b, '[', '6', 'n', 0xff, '\r', '\n'}
	var leaked io.Reader
	err := c.Raw(ctx, "binary transfer", func(rw io.ReadWriter) error {
		leaked = rw
		if _, err := rw.Write([]byte{0x43, 0x00, 0x18}); err != nil {
			return err
		}
		toHost.Write(binary)
		got := make([]byte, 0, len(binary))
		buf := make([]byte, 4)
		for len(got) < len(binary) {
			n, err := rw.Read(buf)
			if err != nil {
				return err
			}
			got = append(got, buf[:n]...)
		}
		if !bytes.Equal(got, binary) {
			t.Errorf("raw read %q, want %q (no cleaning in raw mode)", got, binary)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Raw: %v", err)
	}
	if n, err := leaked.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("reader after Raw returned %d, %v; want 0, EOF", n, err)
	}
	sent := make([]byte, 3)
	if _, err := io.ReadFull(fromHost, sent); err != nil || !bytes.Equal(sent, []byte{0x43, 0x00, 0x18}) {
		t.Errorf("device got %q, %v", sent, err)
	}
	// Text matching works again after Raw, and binary bytes were never pending.
	toHost.Write([]byte("U-Boot ready\n=> "))
	out, err := c.Expect(ctx, regexp.MustCompile(`=> $`))
	if err != nil {
		t.Fatalf("Expect after Raw: %v", err)
	}
	if bytes.Contains([]byte(out), []byte("loady")) || bytes.ContainsRune([]byte(out), 0xfe) {
		t.Errorf("Expect saw text from before or during Raw: %q", out)
	}
	if st := c.Stats(); st.TxBytes != 3 || st.RxBytes < int64(len(binary)) {
		t.Errorf("stats %+v: raw bytes not counted", st)
	}
	c.Close()
	if !regexp.MustCompile(`raw transfer "binary transfer" ends after .*: 3 bytes sent, 11 received`).MatchString(tr.String()) {
		t.Errorf("transcript lacks the raw transfer note:\n%s", tr.String())
	}
}
