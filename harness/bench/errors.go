package bench

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Sentinels for the kinds of problem an *Error reports; match them with
// errors.Is on the error Load or Parse returns.
var (
	ErrSyntax       = errors.New("YAML syntax error")
	ErrUnknownField = errors.New("unknown field")
	ErrMissingField = errors.New("missing required field")
	ErrType         = errors.New("wrong type")
	ErrInvalid      = errors.New("invalid value")
	ErrDuplicate    = errors.New("duplicate")
	ErrMissingFile  = errors.New("referenced file not usable")
	ErrTooLarge     = errors.New("bench file too large")
)

// MaxFileSize is the largest bench file Load and Parse accept (4 MiB; a
// bench of a thousand targets is about 150 KB). Larger files are refused
// before they are parsed, so parsing a bench file, even one with a syntax
// error to locate, takes a bounded time (about a second at most).
const MaxFileSize = 4 << 20

// Error is one problem in a bench file.
type Error struct {
	File  string // the name given to Parse
	Line  int    // 1-based; 0 if unknown
	Field string // path such as "targets[1].console.baud"; empty for the whole file
	Msg   string
	Kind  error // one of the Err* sentinels
	Err   error // underlying cause (fs.ErrNotExist, a regexp error, ...), or nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Errors is every problem found in a bench file, one per line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As look at each problem.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// sorted orders problems by line so the report reads top to bottom; the
// sort is stable, so problems on one line keep the order they were found.
func (es Errors) sorted() Errors {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b *Error) int { return a.Line - b.Line })
	return out
}

// suggest returns the candidate closest to s, if it is close enough to be
// a likely typo ("consle" -> "console", "data-bits" -> "data_bits").
func suggest(s string, candidates []string) string {
	best, bestD := "", -1
	ls := strings.ToLower(s)
	for _, c := range candidates {
		d := editDistance(ls, strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > 2 && bestD*3 > len(best) {
		return ""
	}
	if bestD >= len(s) { // "x" is 1 away from every one-letter name
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
