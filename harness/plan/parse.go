package plan

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Sentinels for the kinds of problem an *Error reports (errors.Is).
var (
	ErrSyntax       = errors.New("YAML syntax error")
	ErrUnknownField = errors.New("unknown field")
	ErrMissingField = errors.New("missing required field")
	ErrType         = errors.New("wrong type")
	ErrInvalid      = errors.New("invalid value")
	ErrTooLarge     = errors.New("plan file too large")
)

// MaxFileSize bounds a plan file (a plan of a hundred phases is a few KB).
const MaxFileSize = 1 << 20

// Error is one problem in a plan file: "file:line: field: message".
type Error struct {
	File  string
	Line  int    // 1-based; 0 if unknown
	Field string // "phases[2].measurement.min"
	Msg   string
	Kind  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

// Errors is every problem found, one per line.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Load reads and validates the plan at path.
func Load(path string) (*Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("test plan: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("test plan %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, filepath.Dir(abs), data)
}

// Parse validates a plan's bytes; name is the file name errors give, dir the directory relative
// image paths are taken from. Every problem is reported (as Errors), not only the first.
func Parse(name, dir string, data []byte) (*Plan, error) {
	p := &parser{file: name, dir: dir}
	pl := p.parse(data)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *Error) int { return a.Line - b.Line })
		return nil, p.errs
	}
	pl.File = name
	return pl, nil
}

type parser struct {
	file string
	dir  string
	errs Errors
}

func (p *parser) add(line int, field string, kind error, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...), Kind: kind})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) parse(data []byte) *Plan {
	if len(data) > MaxFileSize {
		p.add(0, "", ErrTooLarge, "more than %d bytes", MaxFileSize)
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 0
		msg := err.Error()
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		p.add(line, "", ErrSyntax, "%s", strings.TrimPrefix(msg, "yaml: "))
		return nil
	}
	if len(doc.Content) == 0 {
		p.add(0, "", ErrSyntax, "empty plan file")
		return nil
	}
	return p.plan(doc.Content[0])
}

// fields is one mapping whose keys were checked against the known ones.
type fields struct {
	p    *parser
	path string
	line int
	vals map[string]*yaml.Node
	keys map[string]*yaml.Node
}

func join(path, f string) string {
	if path == "" {
		return f
	}
	return path + "." + f
}

func describe(n *yaml.Node) string {
	switch {
	case n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func (p *parser) mapping(n *yaml.Node, path string, known []string) *fields {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode {
		line := 0
		if n != nil {
			line = n.Line
		}
		p.add(line, path, ErrType, "want a mapping, got %s", describe(n))
		return nil
	}
	f := &fields{p: p, path: path, line: n.Line, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(known, k.Value) {
			hint := ""
			for _, c := range known {
				if distance(strings.ToLower(strings.ReplaceAll(k.Value, "-", "_")), c) <= 2 {
					hint = fmt.Sprintf(" (did you mean %q?)", c)
					break
				}
			}
			p.add(k.Line, join(path, k.Value), ErrUnknownField, "unknown field%s; known: %s", hint, strings.Join(known, ", "))
			continue
		}
		if _, dup := f.vals[k.Value]; dup {
			p.add(k.Line, join(path, k.Value), ErrInvalid, "given twice (first on line %d)", f.keys[k.Value].Line)
			continue
		}
		for v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		f.vals[k.Value], f.keys[k.Value] = v, k
	}
	return f
}

func (f *fields) has(name string) bool { return f.vals[name] != nil }

func (f *fields) lineOf(name string) int {
	if k := f.keys[name]; k != nil {
		return k.Line
	}
	return f.line
}

// scalar returns a scalar field's node, or nil (reporting a type error) for anything else.
func (f *fields) scalar(name string) *yaml.Node {
	v := f.vals[name]
	if v == nil {
		return nil
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
		f.p.add(v.Line, join(f.path, name), ErrType, "want a single value, got %s", describe(v))
		return nil
	}
	return v
}

func (f *fields) str(name string) string {
	v := f.scalar(name)
	if v == nil {
		return ""
	}
	if v.ShortTag() != "!!str" {
		f.p.add(v.Line, join(f.path, name), ErrType, "want a string, got %s (quote it)", describe(v))
		return ""
	}
	return v.Value
}

func (f *fields) reqStr(name string) string {
	if !f.has(name) {
		f.p.add(f.line, join(f.path, name), ErrMissingField, "required")
		return ""
	}
	s := f.str(name)
	if s == "" && f.scalar(name) != nil && f.vals[name].ShortTag() == "!!str" {
		f.p.add(f.lineOf(name), join(f.path, name), ErrInvalid, "must not be empty")
	}
	return s
}

func (f *fields) number(name string) *float64 {
	v := f.scalar(name)
	if v == nil {
		return nil
	}
	if t := v.ShortTag(); t != "!!int" && t != "!!float" {
		f.p.add(v.Line, join(f.path, name), ErrType, "want a number, got %s", describe(v))
		return nil
	}
	x, err := strconv.ParseFloat(strings.ReplaceAll(v.Value, "_", ""), 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		f.p.add(v.Line, join(f.path, name), ErrType, "want a finite number, got %s", describe(v))
		return nil
	}
	return &x
}

func (f *fields) integer(name string, def, lo, hi int) int {
	v := f.scalar(name)
	if v == nil {
		return def
	}
	n, err := strconv.Atoi(v.Value)
	if v.ShortTag() != "!!int" || err != nil {
		f.p.add(v.Line, join(f.path, name), ErrType, "want a whole number, got %s", describe(v))
		return def
	}
	if n < lo || n > hi {
		f.p.add(v.Line, join(f.path, name), ErrInvalid, "%d is out of range (%d to %d)", n, lo, hi)
		return def
	}
	return n
}

func (f *fields) boolean(name string) bool {
	v := f.scalar(name)
	if v == nil {
		return false
	}
	if v.ShortTag() != "!!bool" {
		f.p.add(v.Line, join(f.path, name), ErrType, "want true or false, got %s", describe(v))
		return false
	}
	return v.Value == "true"
}

func (f *fields) duration(name string, def time.Duration) time.Duration {
	v := f.scalar(name)
	if v == nil {
		return def
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		f.p.add(v.Line, join(f.path, name), ErrType, "want a duration such as 30s or 2m, got %s", describe(v))
		return def
	}
	if d <= 0 || d > 24*time.Hour {
		f.p.add(v.Line, join(f.path, name), ErrInvalid, "%s is out of range (above 0, at most 24h)", d)
		return def
	}
	return d
}

func (f *fields) oneOf(name, def string, allowed ...string) string {
	if !f.has(name) {
		return def
	}
	s := f.str(name)
	if s != "" && !slices.Contains(allowed, s) {
		f.p.add(f.lineOf(name), join(f.path, name), ErrInvalid, "%q is not one of %s", s, strings.Join(allowed, ", "))
		return def
	}
	return s
}

func (f *fields) regexp(name string, required bool) *regexp.Regexp {
	if !f.has(name) {
		if required {
			f.p.add(f.line, join(f.path, name), ErrMissingField, "required")
		}
		return nil
	}
	s := f.str(name)
	if s == "" {
		return nil
	}
	re, err := regexp.Compile(s)
	if err != nil {
		f.p.add(f.lineOf(name), join(f.path, name), ErrInvalid, "not a regular expression: %v", err)
		return nil
	}
	if re.NumSubexp() > 1 {
		f.p.add(f.lineOf(name), join(f.path, name), ErrInvalid, "%d capture groups; the value is the first group, give at most one", re.NumSubexp())
		return nil
	}
	return re
}

var (
	topKeys         = []string{"name", "dut_id", "release", "defaults", "phases"}
	defaultKeys     = []string{"timeout", "retries"}
	shellKeys       = []string{"command", "regexp"}
	commonPhaseKeys = []string{"name", "type", "timeout", "retries", "continue_on_failure"}
	phaseKeys       = map[string][]string{
		TypeFlash:        {"image", "expect_version"},
		TypeProvision:    {"already_provisioned"},
		TypeVerify:       {},
		TypeReboot:       {},
		TypeFactoryReset: {},
		TypePowerCycle:   {},
		TypeShell:        {"command", "measurement"},
	}
	measurementKeys = []string{"name", "regexp", "min", "max", "equals", "units"}
)

// Keys lists every field a plan may hold, by where it may appear ("phases[].image"), for the
// documentation's table.
func Keys() []string {
	var out []string
	out = append(out, topKeys...)
	for _, k := range defaultKeys {
		out = append(out, "defaults."+k)
	}
	for _, k := range shellKeys {
		out = append(out, "dut_id."+k)
	}
	for _, k := range commonPhaseKeys {
		out = append(out, "phases[]."+k)
	}
	for _, t := range Types() {
		for _, k := range phaseKeys[t] {
			out = append(out, "phases[]."+k)
		}
	}
	for _, k := range measurementKeys {
		out = append(out, "phases[].measurement."+k)
	}
	return out
}

func (p *parser) plan(root *yaml.Node) *Plan {
	top := p.mapping(root, "", topKeys)
	if top == nil {
		return nil
	}
	pl := &Plan{Name: top.reqStr("name")}
	pl.Release = top.oneOf("release", ReleaseNone, ReleaseNone, ReleasePowerOff)
	if top.has("dut_id") {
		if f := p.mapping(top.vals["dut_id"], "dut_id", shellKeys); f != nil {
			pl.DUTID = &Shell{Command: f.reqStr("command"), Regexp: f.regexp("regexp", true)}
		}
	}
	timeout, retries := time.Duration(0), 0
	if top.has("defaults") {
		if f := p.mapping(top.vals["defaults"], "defaults", defaultKeys); f != nil {
			timeout = f.duration("timeout", 0)
			retries = f.integer("retries", 0, 0, MaxRetries)
		}
	}
	if !top.has("phases") {
		p.add(top.line, "phases", ErrMissingField, "required: the phases every DUT goes through, in order")
		return pl
	}
	seq := top.vals["phases"]
	if seq.Kind != yaml.SequenceNode {
		p.add(seq.Line, "phases", ErrType, "want a list of phases, got %s", describe(seq))
		return pl
	}
	if len(seq.Content) == 0 {
		p.add(seq.Line, "phases", ErrInvalid, "no phases")
	}
	names := map[string]int{}
	for i, n := range seq.Content {
		path := fmt.Sprintf("phases[%d]", i)
		ph, ok := p.phase(n, path, timeout, retries)
		if !ok {
			continue
		}
		if first, dup := names[ph.Name]; dup {
			p.add(ph.Line, path+".name", ErrInvalid, "phase name %q is used twice (first on line %d); names tell phases apart in records", ph.Name, first)
		}
		names[ph.Name] = ph.Line
		pl.Phases = append(pl.Phases, ph)
	}
	return pl
}

func (p *parser) phase(n *yaml.Node, path string, defTimeout time.Duration, defRetries int) (Phase, bool) {
	// The type decides which fields are known: read it first.
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode {
		p.add(n.Line, path, ErrType, "want a phase (a mapping with a type), got %s", describe(n))
		return Phase{}, false
	}
	typ, typLine := "", n.Line
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			typ, typLine = n.Content[i+1].Value, n.Content[i+1].Line
		}
	}
	extra, known := phaseKeys[typ]
	if !known {
		if typ == "" {
			p.add(n.Line, path+".type", ErrMissingField, "required: one of %s", strings.Join(Types(), ", "))
		} else {
			p.add(typLine, path+".type", ErrInvalid, "unknown phase %q; phases: %s", typ, strings.Join(Types(), ", "))
		}
		return Phase{}, false
	}
	f := p.mapping(n, path, append(slices.Clone(commonPhaseKeys), extra...))
	if f == nil {
		return Phase{}, false
	}
	def := defTimeout
	if def == 0 {
		def = DefaultTimeout
		if typ == TypeFlash {
			def = DefaultFlashTimeout
		}
	}
	ph := Phase{
		Type:              typ,
		Line:              n.Line,
		Name:              typ,
		Timeout:           f.duration("timeout", def),
		Retries:           f.integer("retries", defRetries, 0, MaxRetries),
		ContinueOnFailure: f.boolean("continue_on_failure"),
	}
	if f.has("name") {
		ph.Name = f.reqStr("name")
	}
	switch typ {
	case TypeFlash:
		img := f.reqStr("image")
		if img != "" {
			if !filepath.IsAbs(img) {
				img = filepath.Join(p.dir, img)
			}
			if st, err := os.Stat(img); err != nil || !st.Mode().IsRegular() {
				why := "not a regular file"
				if err != nil {
					why = err.Error()
				}
				p.add(f.lineOf("image"), path+".image", ErrInvalid, "image %s: %s", img, why)
			}
		}
		ph.Image = img
		ph.ExpectVersion = f.str("expect_version")
	case TypeProvision:
		ph.AlreadyProvisioned = f.oneOf("already_provisioned", AlreadyRefuse, AlreadyRefuse, AlreadyReprovision)
	case TypeShell:
		ph.Command = f.reqStr("command")
		if strings.ContainsAny(ph.Command, "\r\n") {
			p.add(f.lineOf("command"), path+".command", ErrInvalid, "one line of shell only")
		}
		if f.has("measurement") {
			ph.Measurement = p.measurement(f.vals["measurement"], path+".measurement", ph.Name)
		}
	}
	return ph, true
}

func (p *parser) measurement(n *yaml.Node, path, phase string) *Measurement {
	f := p.mapping(n, path, measurementKeys)
	if f == nil {
		return nil
	}
	m := &Measurement{Name: phase, Regexp: f.regexp("regexp", true), Units: f.str("units")}
	if f.has("name") {
		m.Name = f.reqStr("name")
	}
	m.Min, m.Max = f.number("min"), f.number("max")
	if f.has("equals") {
		if v := f.scalar("equals"); v != nil {
			s := v.Value
			m.Equals = &s
		}
		if f.has("min") || f.has("max") {
			p.add(f.lineOf("equals"), path+".equals", ErrInvalid, "give either equals or min/max, not both")
		}
	}
	if m.Min != nil && m.Max != nil && *m.Min > *m.Max {
		p.add(f.lineOf("min"), path+".min", ErrInvalid, "minimum %g is above the maximum %g", *m.Min, *m.Max)
	}
	return m
}

// distance is the Levenshtein distance of a and b (for "did you mean").
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
