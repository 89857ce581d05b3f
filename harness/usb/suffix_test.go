package usb_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hilbench/harness/usb"
)

func TestSuffixRoundTrip(t *testing.T) {
	img := image(1000, 60)
	file := usb.AppendSuffix(img, usb.Suffix{Device: 0x0200, Product: 0xdf11, Vendor: 0x0483, DFUVersion: 0x011A})
	got, s, err := usb.SplitSuffix(file)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "image", got, img)
	if !s.Matches(0x0483, 0xdf11) || s.Matches(0x0483, 0x1234) || s.DFUVersion != 0x011A {
		t.Fatalf("suffix %+v", s)
	}
	file[10] ^= 0xFF
	if _, _, err := usb.SplitSuffix(file); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Fatalf("corrupt file: %v", err)
	}
	if _, _, err := usb.SplitSuffix(img); !errors.Is(err, usb.ErrNoSuffix) {
		t.Fatalf("plain image: %v", err)
	}
}

// TestSuffixMatchesDfuSuffix checks the CRC against dfu-suffix (dfu-util), when installed.
func TestSuffixMatchesDfuSuffix(t *testing.T) {
	tool, err := exec.LookPath("dfu-suffix")
	if err != nil {
		t.Skip("dfu-suffix (dfu-util) not installed")
	}
	path := filepath.Join(t.TempDir(), "fw.dfu")
	img := image(777, 61)
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "-v", "0483", "-p", "df11", "-d", "0200", "-a", path).CombinedOutput(); err != nil {
		t.Fatalf("dfu-suffix: %v\n%s", err, out)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, s, err := usb.SplitSuffix(file)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "image", got, img)
	if s.Vendor != 0x0483 || s.Product != 0xdf11 || s.Device != 0x0200 {
		t.Fatalf("suffix %+v", s)
	}
	sameBytes(t, "file", usb.AppendSuffix(img, s), file)
}
