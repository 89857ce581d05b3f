package label

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"html"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"strings"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Options say how big a label prints.
type Options struct {
	// ModuleSize is the printer dots per Data Matrix module (Code 128's narrow bar is half of it, 2
	// dots at least).
	ModuleSize int
	// DPI is the printer's resolution, dots per inch: the PNG records it (pHYs) and the SVG's
	// width and height are in millimetres from it.
	DPI int
}

// Default options: 4 dots at 300 DPI is a 0.34 mm module, a 36x36 symbol of 12.2 mm (the FFS
// manufacturing guide asks for at least 10 mm for the product barcode).
const (
	DefaultModuleSize = 4
	DefaultDPI        = 300
)

func (o Options) check() error {
	if o.ModuleSize < 1 || o.ModuleSize > 100 {
		return fmt.Errorf("label module size %d dots: want 1..100", o.ModuleSize)
	}
	if o.DPI < 72 || o.DPI > 2400 {
		return fmt.Errorf("label DPI %d: want 72..2400", o.DPI)
	}
	return nil
}

// Label is one device's label: the FFS Data Matrix above, the serial as Code 128 and as text
// below.
type Label struct {
	Serial  string
	Matrix  *Matrix
	Code128 []bool
}

// New encodes a label. A payload too big for any Data Matrix is ErrTooBig.
func New(payload, serial string) (*Label, error) {
	m, err := DataMatrix(payload)
	if err != nil {
		return nil, err
	}
	bars, err := Code128(serial)
	if err != nil {
		return nil, err
	}
	return &Label{Serial: serial, Matrix: m, Code128: bars}, nil
}

// layout places the label's parts, in dots.
type layout struct {
	m                      int // module size
	x                      int // Code 128 module (narrow bar) size
	w, h                   int // label
	dmX, dmY               int // Data Matrix top left
	barX, barY, barH       int // Code 128
	textX, textY, textSize int // text baseline left, scale of the 7x13 font
}

// Quiet zones: 2 modules around the Data Matrix (ISO/IEC 16022 asks 1), 10 around Code 128
// (ISO/IEC 15417).
const (
	dmQuiet  = 2
	barQuiet = 10
)

func (l *Label) layout(m int) layout {
	var lo layout
	lo.m = m
	dm := l.Matrix.Size * m
	// Code 128's narrow bar is half a Data Matrix module (2 dots at least): a 16-character
	// serial is then about 36 mm wide at the default 4 dots and 300 DPI, not 72.
	lo.x = max(2, (m+1)/2)
	bars := len(l.Code128) * lo.x
	lo.textSize = max(1, (m+1)/2)
	textW := len(l.Serial) * 7 * lo.textSize
	lo.w = max(dm+2*dmQuiet*m, bars+2*barQuiet*lo.x, textW+2*dmQuiet*m)
	lo.dmX, lo.dmY = (lo.w-dm)/2, dmQuiet*m
	lo.barX, lo.barY = (lo.w-bars)/2, lo.dmY+dm+3*m
	lo.barH = max(12*m, 24)
	lo.textX = (lo.w - textW) / 2
	lo.textY = lo.barY + lo.barH + m + 11*lo.textSize // basicfont's ascent is 11 of 13
	lo.h = lo.textY + 2*lo.textSize + dmQuiet*m
	return lo
}

// Image draws the label at o's module size: two colours, white (0) and black (1), so the PNG
// is written with 1 bit a pixel.
func (l *Label) Image(o Options) (*image.Paletted, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	lo := l.layout(o.ModuleSize)
	img := image.NewPaletted(image.Rect(0, 0, lo.w, lo.h), color.Palette{color.Gray{Y: 0xff}, color.Gray{Y: 0}})
	m := lo.m
	for y, row := range l.Matrix.Modules {
		for x, dark := range row {
			if dark {
				fill(img, image.Rect(lo.dmX+x*m, lo.dmY+y*m, lo.dmX+(x+1)*m, lo.dmY+(y+1)*m))
			}
		}
	}
	for x, bar := range l.Code128 {
		if bar {
			fill(img, image.Rect(lo.barX+x*lo.x, lo.barY, lo.barX+(x+1)*lo.x, lo.barY+lo.barH))
		}
	}
	// The text, drawn at the font's own size and scaled up by whole pixels (a bitmap font).
	small := image.NewGray(image.Rect(0, 0, len(l.Serial)*7, 13))
	draw.Draw(small, small.Bounds(), image.White, image.Point{}, draw.Src)
	d := font.Drawer{Dst: small, Src: image.Black, Face: basicfont.Face7x13, Dot: fixed.P(0, 11)}
	d.DrawString(l.Serial)
	s := lo.textSize
	top := lo.textY - 11*s
	for y := 0; y < 13; y++ {
		for x := 0; x < small.Bounds().Dx(); x++ {
			if small.GrayAt(x, y).Y < 128 {
				fill(img, image.Rect(lo.textX+x*s, top+y*s, lo.textX+(x+1)*s, top+(y+1)*s))
			}
		}
	}
	return img, nil
}

// fill blackens r (inside img).
func fill(img *image.Paletted, r image.Rectangle) {
	r = r.Intersect(img.Rect)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := img.Pix[img.PixOffset(r.Min.X, y):img.PixOffset(r.Max.X, y)]
		for i := range row {
			row[i] = 1
		}
	}
}

// PNG is the label as a black and white PNG that records o.DPI.
func (l *Label) PNG(o Options) ([]byte, error) {
	img, err := l.Image(o)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: pngBuffers}).Encode(&buf, img); err != nil {
		return nil, err
	}
	return withPHYs(buf.Bytes(), o.DPI)
}

// pngBuffers keeps the PNG encoder's buffers and zlib writer between labels (making a zlib
// writer costs as much as compressing a label).
var pngBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() *png.EncoderBuffer {
	e, _ := b.p.Get().(*png.EncoderBuffer)
	return e
}

func (b *bufferPool) Put(e *png.EncoderBuffer) { b.p.Put(e) }

// withPHYs adds the pHYs chunk (PNG specification 11.3.5.3: pixels per metre) after IHDR, so
// a print dialog sizes the label from the file; image/png does not write it.
func withPHYs(p []byte, dpi int) ([]byte, error) {
	const ihdrEnd = 8 + 4 + 4 + 13 + 4
	if len(p) < ihdrEnd || string(p[12:16]) != "IHDR" {
		return nil, errors.New("PNG without IHDR first")
	}
	ppm := uint32(math.Round(float64(dpi) / 0.0254))
	chunk := make([]byte, 0, 21)
	chunk = binary.BigEndian.AppendUint32(chunk, 9)
	chunk = append(chunk, "pHYs"...)
	chunk = binary.BigEndian.AppendUint32(chunk, ppm)
	chunk = binary.BigEndian.AppendUint32(chunk, ppm)
	chunk = append(chunk, 1) // unit: metre
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	out := make([]byte, 0, len(p)+len(chunk))
	out = append(out, p[:ihdrEnd]...)
	out = append(out, chunk...)
	return append(out, p[ihdrEnd:]...), nil
}

// SVG is the label as SVG: one user unit a printer dot, width and height in millimetres at
// o.DPI, modules as runs of rectangles, the serial as text.
func (l *Label) SVG(o Options) ([]byte, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	lo := l.layout(o.ModuleSize)
	mm := func(dots int) string { return fmt.Sprintf("%.2fmm", float64(dots)*25.4/float64(o.DPI)) }
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %d %d" shape-rendering="crispEdges">`+"\n",
		mm(lo.w), mm(lo.h), lo.w, lo.h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n<g fill=\"#000\">\n", lo.w, lo.h)
	m := lo.m
	for y, row := range l.Matrix.Modules {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			run := 1
			for x+run < len(row) && row[x+run] {
				run++
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d"/>`+"\n", lo.dmX+x*m, lo.dmY+y*m, run*m, m)
			x += run
		}
	}
	for x := 0; x < len(l.Code128); {
		if !l.Code128[x] {
			x++
			continue
		}
		run := 1
		for x+run < len(l.Code128) && l.Code128[x+run] {
			run++
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d"/>`+"\n", lo.barX+x*lo.x, lo.barY, run*lo.x, lo.barH)
		x += run
	}
	fmt.Fprintf(&b, "</g>\n"+`<text x="%d" y="%d" font-family="monospace" font-size="%d" textLength="%d">%s</text>`+"\n</svg>\n",
		lo.textX, lo.textY, 13*lo.textSize, len(l.Serial)*7*lo.textSize, html.EscapeString(l.Serial))
	return []byte(b.String()), nil
}

// Bounds of a symbol in the rendered label, for tests and cropping: the Data Matrix's square.
func (l *Label) MatrixBounds(o Options) image.Rectangle {
	lo := l.layout(o.ModuleSize)
	s := l.Matrix.Size * lo.m
	return image.Rect(lo.dmX, lo.dmY, lo.dmX+s, lo.dmY+s)
}
