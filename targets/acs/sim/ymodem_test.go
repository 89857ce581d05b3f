package sim

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"
)

// A tiny YMODEM sender of its own (table-driven CRC, nothing shared with the
// receiver), for the cases sb does not produce on demand.

var tCRCTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return
}()

func tCRC(p []byte) uint16 {
	var c uint16
	for _, b := range p {
		c = c<<8 ^ tCRCTable[byte(c>>8)^b]
	}
	return c
}

// tBlock frames data (padded with ^Z) as block num: 128 bytes with SOH up to
// 128 bytes of data, else 1024 with STX.
func tBlock(num byte, data []byte) []byte {
	size, start := 128, byte(0x01)
	if len(data) > 128 {
		size, start = 1024, 0x02
	}
	body := append(bytes.Clone(data), bytes.Repeat([]byte{0x1a}, size-len(data))...)
	crc := tCRC(body)
	out := append([]byte{start, num, ^num}, body...)
	return append(out, byte(crc>>8), byte(crc))
}

func tHeader(name string, size int) []byte {
	return tBlock(0, fmt.Appendf(nil, "%s\x00%d 0 100644\x00", name, size))
}

// tEndOfBatch is the empty header: 128 NULs.
func tEndOfBatch() []byte { return tBlock(0, make([]byte, 128)) }

// expect reads the next byte and wants it to be want; the receiver's 'C'
// polls are skipped unless 'C' is wanted.
func (c *console) expect(want byte, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for len(c.buf) > 0 {
			got := c.buf[0]
			c.buf = c.buf[1:]
			if got == want {
				return
			}
			if got != 'C' {
				c.t.Fatalf("got %#02x, want %#02x (rest %q)", got, want, c.buf)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no %#02x within %v", want, timeout)
		}
		if err := c.fill(); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *console) startLoady() {
	c.t.Helper()
	c.write("loady\r")
	if _, err := c.until(romReadyRE, 5*time.Second); err != nil {
		c.t.Fatal(err)
	}
	c.expect('C', 5*time.Second)
	c.buf = nil
}

func TestLoadyHandSender(t *testing.T) {
	t.Parallel()
	d := startDevice(t, func(c *Config) { c.BootloaderStrap = true })
	c := openConsole(t, d, 115200)
	c.romBanner(10 * time.Second)
	c.prompt = "=> "
	const s = 2 * time.Second

	img := imageOfSize("edge-1", 2000)
	b1, b2, b3 := img[:1024], img[1024:1152], img[1152:]

	t.Run("retries", func(t *testing.T) {
		c.t = t
		c.startLoady()
		c.write(string(tHeader("edge.img", len(img))))
		c.expect(yACK, s)
		c.expect('C', s)
		bad := tBlock(1, b1)
		bad[len(bad)-1] ^= 0x55 // CRC
		c.write(string(bad))
		c.expect(yNAK, s)
		bad = tBlock(1, b1)
		bad[2] = 0x00 // complement
		c.write(string(bad))
		c.expect(yNAK, s)
		c.write(string(tBlock(1, b1)[:500])) // cut short
		c.expect(yNAK, 3*s)
		c.write(string(tBlock(1, b1)))
		c.expect(yACK, s)
		c.write(string(tBlock(1, b1))) // a repeat: ACKed, ignored
		c.expect(yACK, s)
		c.write(string(tBlock(2, b2)))
		c.expect(yACK, s)
		c.write(string(tBlock(3, b3)))
		c.expect(yACK, s)
		c.write("\x04")
		c.expect(yNAK, s)
		c.write("\x04")
		c.expect(yACK, s)
		c.expect('C', s)
		c.write(string(tEndOfBatch()))
		c.expect(yACK, s)
		out, err := c.until(regexp.MustCompile(`=> $`), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("## Total Size      = 0x%08x = %d Bytes\r\n## SHA-256        = %s\r\n## Slot B: version edge-1 installed, active\r\n",
			len(img), len(img), sha(img))
		if out != want+"=> " {
			t.Errorf("report %q, want %q", out, want)
		}
		if got, _ := os.ReadFile(d.SlotPath(SlotB)); !bytes.Equal(got, img) {
			t.Errorf("slot B differs from the image (%d bytes)", len(got))
		}
	})

	t.Run("sender cancels", func(t *testing.T) {
		c.t = t
		c.startLoady() // into slot A now
		c.write(string(tHeader("x.img", len(img))))
		c.expect(yACK, s)
		c.expect('C', s)
		c.write(string(tBlock(1, b1)))
		c.expect(yACK, s)
		c.write("\x18\x18\x18\x18\x18\x08\x08\x08\x08\x08") // as lrzsz cancels
		out, err := c.until(regexp.MustCompile(`=> $`), 5*time.Second)
		if err != nil || out != "## Aborted by sender\r\n=> " {
			t.Errorf("after CAN CAN: %q %v", out, err)
		}
		if d.ActiveSlot() != SlotB {
			t.Errorf("ActiveSlot = %s after a cancelled transfer", d.ActiveSlot())
		}
		if st, err := os.Stat(d.SlotPath(SlotA)); err != nil || st.Size() != 1024 {
			t.Errorf("slot A should be torn at 1024 bytes: %v %v", st, err)
		}
	})

	t.Run("sequence error", func(t *testing.T) {
		c.t = t
		c.startLoady()
		c.write(string(tHeader("x.img", len(img))))
		c.expect(yACK, s)
		c.expect('C', s)
		c.write(string(tBlock(1, b1)))
		c.expect(yACK, s)
		c.write(string(tBlock(3, b3)))
		c.expect(yCAN, s)
		c.expect(yCAN, s)
		out, err := c.until(regexp.MustCompile(`=> $`), 5*time.Second)
		if err != nil || out != "## Aborted: block sequence error (got block 3, want 2)\r\n=> " {
			t.Errorf("after a skipped block: %q %v", out, err)
		}
		if s := c.rom("slots", 5*time.Second); !regexp.MustCompile(`A: version=edge-1 size=1024 .* valid=no\r\nB: version=edge-1 .* valid=yes active\r\n`).MatchString(s) {
			t.Errorf("slots = %q", s)
		}
	})

	t.Run("reboot after torn slot", func(t *testing.T) {
		c.t = t
		c.write("boot\r")
		c.prompt = d.Config().Prompt
		c.sync(10 * time.Second)
		if out := c.mustRun("fw_version"); out != "edge-1\n" {
			t.Errorf("fw_version = %q", out)
		}
	})
}

func TestLoadyIdleTimeout(t *testing.T) {
	t.Parallel()
	// The production idle time (10 s) is not under test: that it is kept is.
	const idle = 1500 * time.Millisecond
	d := startDevice(t, func(c *Config) { c.BootloaderStrap = true; c.LoadyIdle = idle })
	c := openConsole(t, d, 115200)
	c.romBanner(10 * time.Second)
	c.prompt = "=> "
	c.startLoady()
	c.write(string(tHeader("x.img", 5000)))
	start := time.Now()
	c.expect(yACK, 2*time.Second)
	// Silence: 'C' polls once a second, then the receiver gives up.
	c.expect(yCAN, 15*time.Second)
	c.expect(yCAN, time.Second)
	if el := time.Since(start); el < idle {
		t.Errorf("gave up after %v, before the idle time of %v", el, idle)
	}
	out, err := c.until(regexp.MustCompile(`=> $`), 5*time.Second)
	if err != nil || out != "## Aborted: timeout\r\n=> " {
		t.Errorf("after silence: %q %v", out, err)
	}
	if d.ActiveSlot() != SlotA {
		t.Errorf("ActiveSlot = %s", d.ActiveSlot())
	}
}
