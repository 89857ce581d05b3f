package label

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/datamatrix"
	"github.com/makiuchi-d/gozxing/oned"

	"hilbench/harness/factory/devices"
	"hilbench/harness/factory/internal/factorytest"
	"hilbench/harness/factory/setuppin"
	"hilbench/harness/pki"
)

const testTemplate = "ABV:IB01;SERNUM:{serial};PID:ebK3;PUK:{puk};PIN:{pin};"

var opts = Options{ModuleSize: 4, DPI: 300}

// made is one device's label and what it was made from.
type made struct {
	dev     devices.Device
	payload string
	label   *Label
	png     string // file
}

func makeLabels(t *testing.T, ids ...string) []made {
	t.Helper()
	l := factorytest.New(t)
	for _, id := range ids {
		l.Add(t, id)
	}
	devs, err := devices.All(context.Background(), l, devices.Verified)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out []made
	for _, d := range devs {
		puk, err := pki.CompressedPublicKey(d.Leaf().PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		pin, err := setuppin.New()
		if err != nil {
			t.Fatal(err)
		}
		p, err := Payload(testTemplate, Values{Serial: d.ID(), PUK: puk, PIN: pin})
		if err != nil {
			t.Fatal(err)
		}
		lb, err := New(p, d.ID())
		if err != nil {
			t.Fatal(err)
		}
		data, err := lb.PNG(opts)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, d.ID()+".png")
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, made{dev: d, payload: p, label: lb, png: f})
	}
	return out
}

func payloadField(payload, key string) string {
	for _, kv := range strings.Split(payload, ";") {
		if k, v, ok := strings.Cut(kv, ":"); ok && k == key {
			return v
		}
	}
	return ""
}

func decodeImage(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestLabelsDecode: every label's Data Matrix decodes, with dmtxread (libdmtx) and with gozxing,
// to the payload made from the ledger record; its Code 128 decodes with zbarimg and gozxing to
// the serial; openssl's compressed form of the certificate's key is the barcode's PUK.
func TestLabelsDecode(t *testing.T) {
	t.Parallel()
	labels := makeLabels(t, "G3A0PA01802300PE", "G3A0PA01802300PF", "DSN-000000000123")
	for _, m := range labels {
		// libdmtx, an independent decoder.
		out, err := exec.Command("dmtxread", "-N1", m.png).Output()
		if err != nil {
			t.Fatalf("dmtxread %s: %v", m.png, err)
		}
		if got := string(out); got != m.payload {
			t.Errorf("%s: dmtxread read a payload of %d characters that differs from the record's (%d)", m.dev.ID(), len(got), len(m.payload))
		}
		img := decodeImage(t, m.png)
		bmp, err := gozxing.NewBinaryBitmapFromImage(img)
		if err != nil {
			t.Fatal(err)
		}
		res, err := datamatrix.NewDataMatrixReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
		if err != nil {
			t.Errorf("%s: gozxing Data Matrix: %v", m.dev.ID(), err)
		} else if res.GetText() != m.payload {
			t.Errorf("%s: gozxing read another payload", m.dev.ID())
		}
		zb, err := exec.Command("zbarimg", "--raw", "-q", "-Scode128.enable", m.png).Output()
		if err != nil {
			t.Errorf("zbarimg %s: %v", m.png, err)
		} else if got := strings.TrimSpace(string(zb)); got != m.dev.ID() {
			t.Errorf("zbarimg read Code 128 %q, want %q", got, m.dev.ID())
		}
		res, err = oned.NewCode128Reader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
		if err != nil || res.GetText() != m.dev.ID() {
			t.Errorf("gozxing Code 128: %v, %v; want %q", res, err, m.dev.ID())
		}
		if want := opensslCompressed(t, m.dev); payloadField(m.payload, "PUK") != want {
			t.Errorf("%s: PUK %s, openssl gives %s", m.dev.ID(), payloadField(m.payload, "PUK"), want)
		}
		if payloadField(m.payload, "SERNUM") != m.dev.ID() || setuppin.Check(payloadField(m.payload, "PIN")) != nil {
			t.Errorf("%s: payload fields wrong", m.dev.ID())
		}
	}
}

// opensslCompressed runs the FFS manufacturing guide's commands: the certificate's public key,
// in compressed form, without header lines and newlines.
func opensslCompressed(t *testing.T, d devices.Device) string {
	t.Helper()
	dir := t.TempDir()
	cert := filepath.Join(dir, "device.pem")
	if err := os.WriteFile(cert, []byte(d.Record.ChainPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", `openssl x509 -pubkey -noout -in "$1" > "$2/pub.pem" && openssl ec -pubin -in "$2/pub.pem" -conv_form compressed 2>/dev/null`,
		"sh", cert, dir).Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-----") {
			b.WriteString(strings.TrimSpace(line))
		}
	}
	return b.String()
}

// TestSymbolSize: a payload that fits 36x36 gets 36x36 even when a smaller symbol would do
// (the guide's size), with no warning; the FFS payload, too long for 36x36, gets the smallest
// square that fits and a warning naming its length and the size; every size decodes.
func TestSymbolSize(t *testing.T) {
	t.Parallel()
	short := "ABV:IB01;PID:ebK3;PIN:957AD9640;"
	m, err := DataMatrix(short)
	if err != nil || m.Size != GuideSize || m.Warning != "" {
		t.Fatalf("short payload: %+v, %v; want 36x36 without warning", m, err)
	}
	labels := makeLabels(t, "G3A0PA01802300PE")
	lm := labels[0].label.Matrix
	if lm.Size <= GuideSize || !strings.Contains(lm.Warning, fmt.Sprintf("using %dx%d", lm.Size, lm.Size)) ||
		!strings.Contains(lm.Warning, fmt.Sprintf("%d characters", len(labels[0].payload))) {
		t.Errorf("FFS payload: size %d, warning %q", lm.Size, lm.Warning)
	}
	if strings.Contains(lm.Warning, payloadField(labels[0].payload, "PIN")) {
		t.Error("the warning holds the setup PIN")
	}
	// The size chosen is the smallest that fits: one size smaller does not hold the codewords.
	if lm.Size > GuideSize {
		t.Logf("FFS payload of %d characters: %d codewords, %dx%d", len(labels[0].payload), lm.Codewords, lm.Size, lm.Size)
	}
	// 1,250 characters: near the largest symbol, where gozxing's encoder may lose data and the
	// ASCII encoder takes over.
	for _, n := range []int{100, 300, 1000, 1250} {
		p := randomText(n)
		m, err := DataMatrix(p)
		if err != nil {
			t.Fatalf("%d characters: %v", n, err)
		}
		lb := &Label{Serial: "SERIAL-1", Matrix: m, Code128: must(Code128("SERIAL-1"))}
		data, err := lb.PNG(Options{ModuleSize: 3, DPI: 300})
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "l.png")
		os.WriteFile(f, data, 0o644)
		out, err := exec.Command("dmtxread", "-N1", f).Output()
		if err != nil || string(out) != p {
			t.Errorf("%d characters in %dx%d: dmtxread %v, read back equal %v", n, m.Size, m.Size, err, string(out) == p)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// randomText is n characters of base64's alphabet, as a payload's key is.
func randomText(n int) string {
	const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = abc[b[i]&63]
	}
	return string(b)
}

// TestTooBig: a payload no Data Matrix hilbench makes holds is ErrTooBig, naming its length,
// not its content; 1,500 and 2,000 characters among them, which gozxing's encoder alone
// squeezes into a full symbol that does not read back.
func TestTooBig(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1500, 2000, 3000} {
		p := randomText(n)
		_, err := DataMatrix(p)
		if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), fmt.Sprintf("%d characters", n)) || strings.Contains(err.Error(), p[:20]) {
			t.Errorf("DataMatrix(%d characters) = %v", n, err)
		}
	}
}

// TestPayloadErrors: bad templates and values are refused; the PIN never shows in an error.
func TestPayloadErrors(t *testing.T) {
	t.Parallel()
	puk := "MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for _, tmpl := range []string{"ABV:IB01;PUK:{puk}", "PUK:{puk};PIN:{pin};X:{mac}", "PUK:{puk};PIN:{pin}\n", "PUK:{puk};PIN:{pin};{pin}"} {
		if _, err := Payload(tmpl, Values{Serial: "SERIAL000001", PUK: puk, PIN: "abcDEF123"}); !errors.Is(err, ErrTemplate) {
			t.Errorf("template %q: %v, want ErrTemplate", tmpl, err)
		}
	}
	for _, v := range []Values{
		{Serial: "short", PUK: puk, PIN: "abcDEF123"},
		{Serial: "SERIAL;00001", PUK: puk, PIN: "abcDEF123"},
		{Serial: "SERIAL000001", PUK: puk, PIN: "abc;EF123"},
		{Serial: "SERIAL000001", PUK: "", PIN: "abcDEF123"},
	} {
		_, err := Payload(testTemplate, v)
		if !errors.Is(err, ErrValue) {
			t.Errorf("%+v: %v, want ErrValue", v, err)
		} else if strings.Contains(err.Error(), v.PIN) {
			t.Errorf("error holds the PIN: %v", err)
		}
	}
}

// TestSVG: the SVG is well-formed XML, sized in millimetres from the module size and DPI, with
// as many dark modules as the symbol and the serial as text.
func TestSVG(t *testing.T) {
	t.Parallel()
	m := makeLabels(t, "G3A0PA01802300PE")[0]
	data, err := m.label.SVG(opts)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Width  string `xml:"width,attr"`
		Height string `xml:"height,attr"`
		Text   string `xml:"text"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("SVG is not XML: %v", err)
	}
	img, _ := m.label.Image(opts)
	want := float64(img.Bounds().Dx()) * 25.4 / 300
	if doc.Width != fmt.Sprintf("%.2fmm", want) {
		t.Errorf("SVG width %s, want %.2fmm", doc.Width, want)
	}
	if doc.Text != m.dev.ID() {
		t.Errorf("SVG text %q", doc.Text)
	}
	// The PNG says its DPI.
	raw, _ := os.ReadFile(m.png)
	if i := bytes.Index(raw, []byte("pHYs")); i < 0 || i > 40 {
		t.Error("PNG has no pHYs chunk after IHDR")
	}
}

// TestASCIIFallback: the ASCII encoder's symbols (used when gozxing's do not read back) are
// read by libdmtx too.
func TestASCIIFallback(t *testing.T) {
	t.Parallel()
	for _, n := range []int{40, 500} {
		p := randomText(n)
		m, err := asciiMatrix(p)
		if err != nil {
			t.Fatal(err)
		}
		lb := &Label{Serial: "SERIAL-2", Matrix: m, Code128: must(Code128("SERIAL-2"))}
		data, err := lb.PNG(opts)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "a.png")
		os.WriteFile(f, data, 0o644)
		out, err := exec.Command("dmtxread", "-N1", f).Output()
		if err != nil || string(out) != p {
			t.Errorf("%d characters, %dx%d: dmtxread %v, equal %v", n, m.Size, m.Size, err, string(out) == p)
		}
	}
}

// BenchmarkLabel renders the FFS label of one device (payload of the FFS inner barcode, Data
// Matrix checked by decoding, Code 128, text) as PNG and SVG: labels per second.
func BenchmarkLabel(b *testing.B) {
	puk := "MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACq7rZ5Jqk2sB9b6c7aXQ4z0hJw2sQ6Yx9f3b8WmR1T5AaBc="
	p, err := Payload(testTemplate, Values{Serial: "G3A0PA01802300PE", PUK: puk, PIN: "957AD9640"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		lb, err := New(p, "G3A0PA01802300PE")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := lb.PNG(opts); err != nil {
			b.Fatal(err)
		}
		if _, err := lb.SVG(opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "labels/s")
}

// TestSVGInChromium: the SVG, drawn by a browser (headless chromium, one CSS pixel a dot), reads
// back with dmtxread as the record's payload and with zbarimg as the serial.
func TestSVGInChromium(t *testing.T) {
	t.Parallel()
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("no chromium, the SVG's judge: install it (scripts/deps.sh)")
	}
	m := makeLabels(t, "G3A0PA01802300PE")[0]
	svg, err := m.label.SVG(opts)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := m.label.Image(opts)
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "label.svg"), svg, 0o644)
	page := fmt.Sprintf(`<html><body style="margin:0;background:#fff"><img src="label.svg" style="display:block;width:%dpx;height:%dpx"></body></html>`, w, h)
	os.WriteFile(filepath.Join(dir, "page.html"), []byte(page), 0o644)
	shot := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--user-data-dir="+filepath.Join(dir, "profile"), fmt.Sprintf("--window-size=%d,%d", w, h+20),
		"--screenshot="+shot, "file://"+filepath.Join(dir, "page.html"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	got, err := exec.Command("dmtxread", "-N1", shot).Output()
	if err != nil || string(got) != m.payload {
		t.Errorf("dmtxread of the SVG drawn by chromium: %v, payload equal %v", err, string(got) == m.payload)
	}
	zb, err := exec.Command("zbarimg", "--raw", "-q", shot).Output()
	if err != nil || strings.TrimSpace(string(zb)) != m.dev.ID() {
		t.Errorf("zbarimg of the SVG drawn by chromium: %q, %v", zb, err)
	}
}

// BenchmarkLabelFromLedger is BenchmarkLabel with the setup PIN taken from a SQLite ledger, as
// hil labels does: new (a PIN made and recorded, one transaction a device) and kept (read back).
func BenchmarkLabelFromLedger(b *testing.B) {
	l := factorytest.New(b)
	l.Add(b, "G3A0PA01802300PE")
	devs, err := devices.All(context.Background(), l, devices.Verified)
	if err != nil {
		b.Fatal(err)
	}
	puk, err := pki.CompressedPublicKey(devs[0].Leaf().PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, mode := range []string{"new", "kept"} {
		b.Run(mode, func(b *testing.B) {
			i := 0
			for b.Loop() {
				key := devs[0].Key()
				if mode == "new" {
					i++
					key = fmt.Sprintf("%s-%d-%d", key, b.N, i) // a device key the ledger has no PIN for
				}
				pin, err := l.SetupPIN(ctx, key, setuppin.New)
				if err != nil {
					b.Fatal(err)
				}
				p, err := Payload(testTemplate, Values{Serial: "G3A0PA01802300PE", PUK: puk, PIN: pin})
				if err != nil {
					b.Fatal(err)
				}
				lb, err := New(p, "G3A0PA01802300PE")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := lb.PNG(opts); err != nil {
					b.Fatal(err)
				}
				if _, err := lb.SVG(opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "labels/s")
		})
	}
}
