package setuppin

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
)

// chiSquare is Pearson's statistic of counts against equal expected frequencies.
func chiSquare(counts []int) float64 {
	total := 0
	for _, c := range counts {
		total += c
	}
	want := float64(total) / float64(len(counts))
	var x float64
	for _, c := range counts {
		d := float64(c) - want
		x += d * d / want
	}
	return x
}

// chiSquareCritical is the chi-square quantile for df degrees of freedom at the standard normal
// quantile z (Wilson-Hilferty approximation, good to well under 1% for df > 30).
func chiSquareCritical(df int, z float64) float64 {
	k := float64(df)
	v := 2 / (9 * k)
	return k * math.Pow(1-v+z*math.Sqrt(v), 3)
}

// zOneInAMillion is the normal quantile for p = 1e-6 (one side): with 10 statistics per run a
// uniform generator fails the test about once in 100,000 runs.
const zOneInAMillion = 4.753

// uniformity counts the characters of n PINs from gen per position and overall and returns a
// description of every statistic past its critical value.
func uniformity(t *testing.T, n int, gen func() (string, error)) []string {
	t.Helper()
	var perPos [Length][len(Alphabet)]int
	var all [len(Alphabet)]int
	index := map[byte]int{}
	for i := 0; i < len(Alphabet); i++ {
		index[Alphabet[i]] = i
	}
	for range n {
		pin, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(pin); err != nil {
			t.Fatalf("generated PIN: %v", err)
		}
		for p := 0; p < Length; p++ {
			i := index[pin[p]]
			perPos[p][i]++
			all[i]++
		}
	}
	crit := chiSquareCritical(len(Alphabet)-1, zOneInAMillion)
	var fails []string
	for p := range perPos {
		if x := chiSquare(perPos[p][:]); x > crit {
			fails = append(fails, "position "+strconv.Itoa(p+1)+": chi-square "+ftoa(x)+" > "+ftoa(crit))
		}
	}
	if x := chiSquare(all[:]); x > crit {
		fails = append(fails, "all positions: chi-square "+ftoa(x)+" > "+ftoa(crit))
	}
	return fails
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// TestChiSquare: 100,000 PINs are uniform over [a-zA-Z0-9] in each position and overall.
func TestChiSquare(t *testing.T) {
	t.Parallel()
	if fails := uniformity(t, 100_000, New); len(fails) > 0 {
		t.Errorf("setup PINs are not uniform:\n%s", strings.Join(fails, "\n"))
	}
}

// moduloBiased is the mistake rejection sampling avoids: a random byte modulo 62.
func moduloBiased() (string, error) {
	var buf [Length]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", err
	}
	for i, b := range buf {
		buf[i] = Alphabet[int(b)%len(Alphabet)]
	}
	return string(buf[:]), nil
}

// TestChiSquareCatchesModuloBias: the same test fails a generator that takes bytes modulo 62
// (so the test can fail), in every position.
func TestChiSquareCatchesModuloBias(t *testing.T) {
	t.Parallel()
	fails := uniformity(t, 100_000, moduloBiased)
	if len(fails) != Length+1 {
		t.Errorf("modulo-biased generator: %d of %d statistics flagged, want all:\n%s", len(fails), Length+1, strings.Join(fails, "\n"))
	}
}

// TestRejection: values 62 and 63 (after the 6-bit cut) are skipped, not folded onto the
// alphabet; the high bits are ignored.
func TestRejection(t *testing.T) {
	t.Parallel()
	src := []byte{62, 63, 0xff, 0xfe, 0, 1, 0x40 | 2, 25, 26, 51, 52, 61, 0xc0 | 61}
	src = append(src, make([]byte, 16)...)
	pin, err := From(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if want := "ABCZaz099"; pin != want {
		t.Errorf("From = %q, want %q", pin, want)
	}
}

// TestShortSource: a random source that runs dry is an error, not a short PIN.
func TestShortSource(t *testing.T) {
	t.Parallel()
	_, err := From(bytes.NewReader(bytes.Repeat([]byte{63}, 40)))
	if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("From(a source of rejected bytes) = %v, want EOF", err)
	}
}

// TestCheck: errors name what is wrong without repeating the PIN.
func TestCheck(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "abc", "abcdefgh-", "abcdefghij", "abcdéfgh"} {
		err := Check(bad)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%q) = %v, want ErrInvalid", bad, err)
			continue
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("Check's error repeats the PIN: %v", err)
		}
	}
	if err := Check("Ab3dE6gH9"); err != nil {
		t.Errorf("Check(valid) = %v", err)
	}
}
