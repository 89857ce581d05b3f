package label

import (
	"errors"
	"fmt"

	"github.com/boombuler/barcode/code128"
	bbdatamatrix "github.com/boombuler/barcode/datamatrix"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/datamatrix"
	dmdecoder "github.com/makiuchi-d/gozxing/datamatrix/decoder"
	"github.com/makiuchi-d/gozxing/datamatrix/encoder"
	"image/color"
)

// GuideSize is the Data Matrix symbol size the FFS manufacturing guide asks for (36x36).
const GuideSize = 36

// MaxSize is the largest symbol hilbench makes: 132x132, 1304 data codewords. ECC 200 goes on to
// 144x144, but that size alone interleaves blocks of unequal length and decoders disagree on it
// (libdmtx reads boombuler's 144x144 symbols, gozxing's decoder does not), so a label that
// needs it is refused rather than printed unreadable to some scanners.
const (
	MaxSize      = 132
	maxCodewords = 1304
)

// ErrTooBig: the payload does not fit the largest Data Matrix symbol.
var ErrTooBig = errors.New("payload too big for any Data Matrix symbol")

// Matrix is a Data Matrix symbol: Size x Size modules, true = dark.
type Matrix struct {
	Size    int
	Modules [][]bool // [row][column]
	// Codewords is the number of data codewords the payload took (before padding).
	Codewords int
	// Warning is set when the payload does not fit GuideSize: it names the payload's length and
	// the size used.
	Warning string
}

// DataMatrix encodes payload as a square ECC 200 symbol: GuideSize when it fits, else the
// smallest square that does (with a Warning). gozxing's encoder picks the densest modes
// (ASCII, C40, Text, X12, EDIFACT, Base256) and computes the Reed-Solomon codewords; every
// symbol is decoded again before use, because that encoder can drop data silently near the
// largest sizes (1,500 random base64 characters come out as a full symbol). When its
// symbol does not read back, boombuler's ASCII-only encoder is used instead. Errors never
// quote the payload: it holds the setup PIN.
func DataMatrix(payload string) (*Matrix, error) {
	if payload == "" {
		return nil, errors.New("empty label payload")
	}
	m, zerr := denseMatrix(payload)
	if zerr == nil {
		return m, nil
	}
	m, err := asciiMatrix(payload)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// denseMatrix is gozxing's encoding, checked by decoding it.
func denseMatrix(payload string) (*Matrix, error) {
	square := encoder.SymbolShapeHint_FORCE_SQUARE
	// The smallest square that fits, to know whether GuideSize does.
	largest, _ := gozxing.NewDimension(MaxSize, MaxSize)
	cw, err := encoder.EncodeHighLevel(payload, square, nil, largest)
	if err != nil {
		return nil, err
	}
	info, err := encoder.SymbolInfo_Lookup(len(cw), square, nil, largest, true)
	if err != nil {
		return nil, err
	}
	hints := map[gozxing.EncodeHintType]any{gozxing.EncodeHintType_DATA_MATRIX_SHAPE: square, gozxing.EncodeHintType_MAX_SIZE: largest}
	if info.GetSymbolWidth() <= GuideSize {
		min, _ := gozxing.NewDimension(GuideSize, GuideSize)
		hints[gozxing.EncodeHintType_MIN_SIZE] = min
	}
	bits, err := datamatrix.NewDataMatrixWriter().Encode(payload, gozxing.BarcodeFormat_DATA_MATRIX, 0, 0, hints)
	if err != nil {
		return nil, err
	}
	if bits.GetWidth() != bits.GetHeight() {
		return nil, fmt.Errorf("a %dx%d symbol, want a square", bits.GetWidth(), bits.GetHeight())
	}
	rows := make([][]bool, bits.GetHeight())
	for y := range rows {
		rows[y] = make([]bool, bits.GetWidth())
		for x := range rows[y] {
			rows[y][x] = bits.Get(x, y)
		}
	}
	return checked(payload, rows, len(cw))
}

// asciiMatrix is boombuler's ASCII-mode encoding (smallest square that fits), checked.
func asciiMatrix(payload string) (*Matrix, error) {
	tooBig := fmt.Errorf("%w: %d characters need more than the %d data codewords of a %dx%d symbol, the largest hilbench makes",
		ErrTooBig, len(payload), maxCodewords, MaxSize, MaxSize)
	bc, err := bbdatamatrix.Encode(payload)
	if err != nil {
		return nil, tooBig // its only refusal of a non-empty payload is "too much data"
	}
	r := bc.Bounds()
	if r.Dx() != r.Dy() || r.Dx() > MaxSize {
		return nil, tooBig
	}
	rows := make([][]bool, r.Dy())
	for y := range rows {
		rows[y] = make([]bool, r.Dx())
		for x := range rows[y] {
			rows[y][x] = color.GrayModel.Convert(bc.At(r.Min.X+x, r.Min.Y+y)).(color.Gray).Y < 128
		}
	}
	return checked(payload, rows, -1)
}

// checked decodes a symbol (gozxing's decoder, Reed-Solomon included) and returns it as a Matrix
// when it reads back as payload.
func checked(payload string, rows [][]bool, codewords int) (*Matrix, error) {
	res, err := dmdecoder.NewDecoder().DecodeBoolMap(rows)
	if err != nil {
		return nil, fmt.Errorf("a %dx%d symbol of %d characters does not decode: %v", len(rows), len(rows), len(payload), err)
	}
	if res.GetText() != payload {
		return nil, fmt.Errorf("a %dx%d symbol of %d characters decodes to %d other characters", len(rows), len(rows), len(payload), len(res.GetText()))
	}
	m := &Matrix{Size: len(rows), Modules: rows, Codewords: codewords}
	if m.Codewords < 0 {
		m.Codewords = len(res.GetRawBytes())
	}
	if m.Size > GuideSize {
		m.Warning = fmt.Sprintf("label payload of %d characters does not fit a %dx%d Data Matrix (86 data codewords): using %dx%d",
			len(payload), GuideSize, GuideSize, m.Size, m.Size)
	}
	return m, nil
}

// Code128 encodes a serial as Code 128 bars (true = bar), one entry per module, quiet zones
// not included.
func Code128(serial string) ([]bool, error) {
	bc, err := code128.Encode(serial)
	if err != nil {
		return nil, fmt.Errorf("Code 128 of serial %q: %v", serial, err)
	}
	w := bc.Bounds().Dx()
	bars := make([]bool, w)
	for x := range bars {
		bars[x] = color.GrayModel.Convert(bc.At(bc.Bounds().Min.X+x, bc.Bounds().Min.Y)).(color.Gray).Y < 128
	}
	return bars, nil
}
