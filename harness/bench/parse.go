package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// parser collects every problem in one bench file.
type parser struct {
	file string // name for messages, as the caller gave it
	dir  string // absolute directory relative paths resolve against
	abs  string // absolute path of the file
	errs Errors
}

func newParser(name string) (*parser, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, fmt.Errorf("bench file %s: %w", name, err)
	}
	return &parser{file: name, dir: filepath.Dir(abs), abs: abs}, nil
}

func (p *parser) add(line int, field string, kind, cause error, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...), Kind: kind, Err: cause})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) parse(data []byte) *Bench {
	if len(data) > MaxFileSize {
		p.add(0, "", ErrTooLarge, nil, "%d bytes; a bench file may hold at most %d (%d MiB)", len(data), MaxFileSize, MaxFileSize>>20)
		return nil
	}
	cr := &countingReader{data: data}
	dec := yaml.NewDecoder(cr)
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(0, "", ErrSyntax, nil, "empty bench file")
			return nil
		}
		p.syntaxError(err, data, cr.n)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.add(extra.Line, "", ErrSyntax, nil, "more than one YAML document; a bench file holds one")
	} else if !errors.Is(err, io.EOF) {
		p.syntaxError(err, data, cr.n)
	}
	if len(doc.Content) == 0 {
		p.add(0, "", ErrSyntax, nil, "empty bench file")
		return nil
	}
	return p.bench(doc.Content[0])
}

// countingReader hands yaml.v3 its input in small pieces and counts how much
// it took: when yaml.v3 fails it has read little past the token it failed
// on, which bounds where the mistake is (see locate).
type countingReader struct {
	data []byte
	n    int
}

// readPiece is how much countingReader gives per Read: small enough that
// what yaml.v3 has read is close to what it has looked at (it reads on
// demand), large enough that the Read calls cost nothing next to parsing.
const readPiece = 16

func (r *countingReader) Read(b []byte) (int, error) {
	if r.n >= len(r.data) {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), readPiece)], r.data[r.n:])
	r.n += k
	return k, nil
}

// syntaxError turns yaml.v3's "yaml: line N: msg" into "file:N: msg".
// consumed is how many bytes of data yaml.v3 had read when it failed.
func (p *parser) syntaxError(err error, data []byte, consumed int) {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	// yaml.v3 prints a 0-based line for parser errors and for the tab
	// error: the line before the one the problem is on.
	if line > 0 && (yamlParserProblems[msg] || strings.HasPrefix(msg, "found a tab character")) {
		line++
	}
	if k, ok := locate(data, max(line, 1), msg, consumed); ok {
		line = k
	}
	switch {
	case strings.Contains(msg, "tab character"):
		msg += " (YAML does not allow tabs for indentation)"
	case msg == "did not find expected key" || msg == "did not find expected '-' indicator":
		msg += " (check the indentation of this line)"
	}
	p.add(line, "", ErrSyntax, err, "%s", msg)
}

var unknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// locate finds the line a syntax error is on, in time linear in the file
// (at most one more parse of it, and only for a parser error).
//
// The mistake is on the first line k, at or after from, where the file cut
// after line k fails with the same message. For a scanner error that is
// the line yaml.v3 names (where the token it was scanning starts). For an
// unknown anchor it is the first line with the alias. For a parser error
// yaml.v3 names where the enclosing block starts, which may be far above
// the mistake; but yaml.v3 reads on demand, so the mistake is at or before
// what it had read (consumed), and the file cut after that line fails as
// the whole file did. The scanner may have read past the failing token to
// the next one (to tell a scalar from a key), over blank and comment lines:
// so the last line with content before that one is tried, with one parse.
func locate(data []byte, from int, msg string, consumed int) (int, bool) {
	if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			return lineOf(data, i), true
		}
		return 0, false
	}
	if !yamlParserProblems[msg] {
		return 0, false // scanner errors: yaml.v3's line is right
	}
	consumed = min(max(consumed, 1), len(data))
	upper := max(lineOf(data, consumed-1), from)
	// The last line before upper with something other than blanks or a
	// comment on it.
	lines := lineStarts(data)
	prev := 0
	for k := min(upper-1, len(lines)); k >= from; k-- {
		text := strings.TrimLeft(string(data[lines[k-1]:lineEnd(data, lines, k)]), " \t\r")
		if text != "" && text != "\n" && text[0] != '#' {
			prev = k
			break
		}
	}
	if prev > 0 {
		err := parseAll(data[:lineEnd(data, lines, prev)])
		if err != nil && strings.HasSuffix(err.Error(), ": "+msg) {
			return prev, true
		}
	}
	return upper, true
}

// lineOf is the 1-based line of byte offset i; like YAML, it takes LF,
// CR LF and a lone CR for line breaks.
func lineOf(data []byte, i int) int {
	return len(lineStarts(data[:i+1]))
}

// lineStarts returns the offset where each line starts (line k at [k-1]),
// with the line breaks of lineOf.
func lineStarts(data []byte) []int {
	starts := []int{0}
	for i, c := range data {
		if (c == '\n' || c == '\r' && (i+1 == len(data) || data[i+1] != '\n')) && i+1 < len(data) {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// lineEnd is the offset just past line k (1-based), its newline included.
func lineEnd(data []byte, starts []int, k int) int {
	if k < len(starts) {
		return starts[k]
	}
	return len(data)
}

// parseAll parses every document in data and returns the first error.
func parseAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// yamlParserProblems are the messages of yaml.v3's parser (parserc.go), as
// opposed to its scanner.
var yamlParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// resolve follows aliases (*anchor) to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe says what a node is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// fields is a validated mapping: unknown and duplicate keys are already
// reported; lookups report type errors against the field's path.
type fields struct {
	p    *parser
	path string
	line int
	keys map[string]*yaml.Node
	vals map[string]*yaml.Node
	// suggested holds field names offered for a misspelt key; required
	// does not report them missing again, one problem being one error.
	suggested map[string]bool
}

// mapping checks that n is a mapping whose keys are all in known. It
// returns nil (after reporting) if n is not a mapping, and nil without a
// report if n is absent or null.
func (p *parser) mapping(n *yaml.Node, path string, known []string) *fields {
	return p.mappingAt(n, 0, path, known)
}

// mappingAt is mapping, reporting missing fields on line at (the line of
// the key that holds the mapping) rather than on the mapping's first key.
func (p *parser) mappingAt(n *yaml.Node, at int, path string, known []string) *fields {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, path, ErrType, nil, "want a mapping, got %s", describe(n))
		return nil
	}
	if at == 0 {
		at = n.Line
	}
	f := &fields{p: p, path: path, line: at, keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}, suggested: map[string]bool{}}
	p.collect(f, n, known, false)
	return f
}

// collect adds n's pairs to f. Keys given explicitly win over keys brought
// in by a `<<` merge, and earlier merges win over later ones (YAML merge
// key spec).
func (p *parser) collect(f *fields, n *yaml.Node, known []string, merged bool) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			p.add(k.Line, f.path, ErrType, nil, "want a field name, got %s", describe(k))
			continue
		}
		name := k.Value
		if first, dup := f.keys[name]; dup {
			if !merged {
				p.add(k.Line, f.path, ErrDuplicate, nil, "field %q given twice (first on line %d)", name, first.Line)
			}
			continue
		}
		if !slices.Contains(known, name) {
			if s := suggest(name, known); s != "" {
				f.suggested[s] = true
				p.add(k.Line, f.path, ErrUnknownField, nil, "unknown field %q (did you mean %q?)", name, s)
			} else {
				p.add(k.Line, f.path, ErrUnknownField, nil, "unknown field %q (known: %s)", name, strings.Join(known, ", "))
			}
			continue
		}
		f.keys[name] = k
		f.vals[name] = v
	}
	for _, m := range merges {
		m = resolve(m)
		var srcs []*yaml.Node
		switch {
		case m.Kind == yaml.MappingNode:
			srcs = []*yaml.Node{m}
		case m.Kind == yaml.SequenceNode:
			for _, s := range m.Content {
				srcs = append(srcs, resolve(s))
			}
		}
		for _, s := range srcs {
			if s == nil || s.Kind != yaml.MappingNode {
				p.add(m.Line, f.path, ErrType, nil, "<< merges a mapping or a list of mappings, got %s", describe(s))
				continue
			}
			p.collect(f, s, known, true)
		}
	}
}

// sub reads a field that holds a mapping; nil if absent or not a mapping.
func (f *fields) sub(name string, known []string) *fields {
	v := f.get(name)
	if v == nil {
		return nil
	}
	return f.p.mappingAt(v, f.keys[name].Line, join(f.path, name), known)
}

// get returns the value of a field, or nil if it is absent or null.
func (f *fields) get(name string) *yaml.Node {
	if f == nil {
		return nil
	}
	v := resolve(f.vals[name])
	if isNull(v) {
		return nil
	}
	return v
}

func (f *fields) has(name string) bool { return f.get(name) != nil }

// required returns the field's value or reports it missing.
func (f *fields) required(name string) *yaml.Node {
	if v := f.get(name); v != nil {
		return v
	}
	if k, ok := f.keys[name]; ok {
		f.p.add(k.Line, join(f.path, name), ErrMissingField, nil, "missing value")
	} else if !f.suggested[name] {
		f.p.add(f.line, f.path, ErrMissingField, nil, "missing required field %q", name)
	}
	return nil
}

// scalar reports and returns false if v is not a scalar.
func (f *fields) scalar(v *yaml.Node, path, want string) bool {
	if v.Kind != yaml.ScalarNode {
		f.p.add(v.Line, path, ErrType, nil, "want %s, got %s", want, describe(v))
		return false
	}
	return true
}

// str reads an optional string field; any scalar is taken as written.
func (f *fields) str(name string) (string, *yaml.Node) {
	v := f.get(name)
	if v == nil || !f.scalar(v, join(f.path, name), "a string") {
		return "", nil
	}
	return v.Value, v
}

// reqStr reads a required, non-empty string field.
func (f *fields) reqStr(name string) (string, *yaml.Node) {
	if f.required(name) == nil {
		return "", nil
	}
	s, v := f.str(name)
	if v != nil && s == "" {
		f.p.add(v.Line, join(f.path, name), ErrInvalid, nil, "must not be empty")
		return "", nil
	}
	return s, v
}

// int reads an optional integer field, checking lo <= value <= hi.
func (f *fields) int(name string, def, lo, hi int) int {
	v := f.get(name)
	if v == nil {
		return def
	}
	path := join(f.path, name)
	if !f.scalar(v, path, "an integer") {
		return def
	}
	var i int
	if v.ShortTag() != "!!int" || v.Decode(&i) != nil {
		f.p.add(v.Line, path, ErrType, nil, "want an integer, got %q", v.Value)
		return def
	}
	if i < lo || i > hi {
		f.p.add(v.Line, path, ErrInvalid, nil, "%d is out of range %d..%d", i, lo, hi)
		return def
	}
	return i
}

// duration reads an optional positive duration such as "10s".
func (f *fields) duration(name string) time.Duration {
	s, v := f.str(name)
	if v == nil {
		return 0
	}
	path := join(f.path, name)
	d, err := time.ParseDuration(s)
	if err != nil {
		f.p.add(v.Line, path, ErrType, err, "want a duration like \"10s\" or \"1m30s\", got %q", s)
		return 0
	}
	if d <= 0 {
		f.p.add(v.Line, path, ErrInvalid, nil, "must be positive, got %q", s)
		return 0
	}
	return d
}

// bool reads an optional true/false field.
func (f *fields) bool(name string) bool {
	v := f.get(name)
	if v == nil {
		return false
	}
	path := join(f.path, name)
	var b bool
	if !f.scalar(v, path, "true or false") {
		return false
	}
	if v.ShortTag() != "!!bool" || v.Decode(&b) != nil {
		f.p.add(v.Line, path, ErrType, nil, "want true or false, got %q", v.Value)
		return false
	}
	return b
}

// enum reads an optional string field that must be one of allowed.
func (f *fields) enum(name string, allowed []string) string {
	s, v := f.str(name)
	if v == nil {
		return ""
	}
	if !slices.Contains(allowed, s) {
		f.p.add(v.Line, join(f.path, name), ErrInvalid, nil, "%q is not one of %s", s, strings.Join(allowed, ", "))
		return ""
	}
	return s
}

// strList reads an optional list of non-empty strings; nil if empty.
func (f *fields) strList(name string) ([]string, []*yaml.Node) {
	v := f.get(name)
	if v == nil {
		return nil, nil
	}
	path := join(f.path, name)
	if v.Kind != yaml.SequenceNode {
		f.p.add(v.Line, path, ErrType, nil, "want a list, got %s", describe(v))
		return nil, nil
	}
	var out []string
	var nodes []*yaml.Node
	for i, item := range v.Content {
		item = resolve(item)
		ipath := index(path, i)
		if isNull(item) || !f.scalar(item, ipath, "a string") {
			if isNull(item) {
				f.p.add(item.Line, ipath, ErrInvalid, nil, "empty list item")
			}
			continue
		}
		if item.Value == "" {
			f.p.add(item.Line, ipath, ErrInvalid, nil, "must not be empty")
			continue
		}
		out = append(out, item.Value)
		nodes = append(nodes, item)
	}
	return out, nodes
}

// path resolves a file reference against the bench file's directory.
func (p *parser) path(s string) string {
	if s == "" || filepath.IsAbs(s) {
		return s
	}
	return filepath.Join(p.dir, s)
}

// existingFile resolves a reference to a file that must exist now.
func (p *parser) existingFile(v *yaml.Node, path, s string) string {
	if v == nil {
		return ""
	}
	abs := p.path(s)
	fi, err := os.Stat(abs)
	where := strconv.Quote(s)
	if abs != s {
		where += " (" + abs + ")"
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.add(v.Line, path, ErrMissingFile, fs.ErrNotExist, "file %s does not exist", where)
	case err != nil:
		p.add(v.Line, path, ErrMissingFile, err, "file %s: %v", where, err)
	case fi.IsDir():
		p.add(v.Line, path, ErrMissingFile, nil, "%s is a directory, want a file", where)
	}
	return abs
}

func (p *parser) bench(root *yaml.Node) *Bench {
	root = resolve(root)
	if root.Kind != yaml.MappingNode {
		p.add(root.Line, "", ErrType, nil, "want a mapping with signer, profile and targets at the top level, got %s", describe(root))
		return nil
	}
	f := p.mapping(root, "", []string{"signer", "profile", "output", "ledger", "factory", "targets"})
	b := &Bench{Path: p.abs}
	b.Signer = p.signer(f)
	b.Profile = p.profile(f)

	b.Output = p.path(DefaultOutput)
	if s, v := f.str("output"); v != nil {
		if s == "" {
			p.add(v.Line, "output", ErrInvalid, nil, "must not be empty")
		}
		b.Output = p.path(s)
	}
	b.Ledger = p.ledger(f)
	b.Factory = p.factory(f)
	b.Targets = p.targets(f)
	return b
}

// factory reads the optional factory mapping: the product as the factory outputs name it.
func (p *parser) factory(top *fields) FactoryConfig {
	var c FactoryConfig
	f := top.sub("factory", []string{"device_type", "labels", "sidewalk"})
	if f == nil {
		return c
	}
	if s, v := f.str("device_type"); v != nil {
		if s == "" || !alnum(s) {
			p.add(v.Line, "factory.device_type", ErrInvalid, nil, "want the Device Type ID (letters and digits), got %q", s)
		}
		c.DeviceType = s
	}
	if l := f.sub("labels", []string{"template", "module_size", "dpi"}); l != nil {
		if s, v := l.reqStr("template"); v != nil {
			switch {
			case strings.Count(s, "{puk}") != 1 || strings.Count(s, "{pin}") != 1:
				p.add(v.Line, "factory.labels.template", ErrInvalid, nil, "must hold {puk} and {pin} once each (the FFS inner barcode carries the device's key and setup PIN)")
			case strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0:
				p.add(v.Line, "factory.labels.template", ErrInvalid, nil, "must be printable ASCII")
			}
			c.Labels.Template = s
		}
		c.Labels.ModuleSize = l.int("module_size", 0, 1, 100)
		c.Labels.DPI = l.int("dpi", 0, 72, 2400)
	}
	if sw := f.sub("sidewalk", []string{"apid", "stage"}); sw != nil {
		if s, v := sw.reqStr("apid"); v != nil {
			if !alnum(s) {
				p.add(v.Line, "factory.sidewalk.apid", ErrInvalid, nil, "want letters and digits (the advertised product id), got %q", s)
			}
			c.Sidewalk.APID = s
		}
		if _, v := sw.str("stage"); v != nil {
			c.Sidewalk.Stage = sw.enum("stage", SidewalkStages)
		}
	}
	return c
}

func alnum(s string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return s != ""
}

// ledger reads the optional ledger mapping: {driver: sqlite, path: FILE} or
// {driver: postgres, dsn: URL}. A ledger key without a driver is SQLite.
func (p *parser) ledger(top *fields) LedgerConfig {
	var c LedgerConfig
	f := top.sub("ledger", []string{"driver", "path", "dsn"})
	if f == nil {
		return c
	}
	c.Driver = LedgerSQLite
	if _, v := f.str("driver"); v != nil {
		if d := f.enum("driver", ledgerDrivers); d != "" {
			c.Driver = d
		} else {
			c.Driver = ""
		}
	}
	if s, v := f.str("path"); v != nil {
		switch {
		case c.Driver == LedgerPostgres:
			p.add(v.Line, "ledger.path", ErrInvalid, nil, "only for driver sqlite, not postgres (postgres takes dsn)")
		case s == "":
			p.add(v.Line, "ledger.path", ErrInvalid, nil, "must not be empty (leave it out for <output>/ledger.db)")
		default:
			c.Path = p.path(s)
			if strings.ContainsAny(c.Path, "?#") {
				p.add(v.Line, "ledger.path", ErrInvalid, nil, "a ledger path may not contain ? or #")
			}
		}
	}
	if c.Driver == LedgerPostgres {
		s, v := f.reqStr("dsn")
		if v != nil {
			if err := checkDSN(s); err != nil {
				p.add(v.Line, "ledger.dsn", ErrInvalid, err, "%v", err)
			} else {
				c.DSN = s
			}
		}
	} else if v := f.get("dsn"); v != nil && c.Driver != "" {
		p.add(v.Line, "ledger.dsn", ErrInvalid, nil, "only for driver postgres, not %s", c.Driver)
	}
	return c
}

// checkDSN accepts a postgres:// or postgresql:// URL with a host, or a libpq key=value
// string. Its messages never repeat the DSN, which may hold a password.
func checkDSN(s string) error {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return errors.New("not a valid URL (check its escaping: @ : / in a user name or password are written %40 %3A %2F)")
		}
		if u.Path == "" || u.Path == "/" {
			return errors.New("want the database after the host, as postgres://user@host:5432/ledger")
		}
		return nil
	}
	if strings.Contains(s, "=") && !strings.Contains(s, "://") {
		return nil
	}
	return errors.New("want a postgres:// URL (postgres://user@host:5432/ledger) or key=value connection string")
}

func (p *parser) signer(top *fields) SignerConfig {
	var c SignerConfig
	top.required("signer")
	f := top.sub("signer", []string{"type", "key", "certificate", "intermediates", "roots",
		"serial", "reader", "slot", "pin_file", "attestation", "attestation_roots", "allow_last_retry", "replug_timeout",
		"max_signatures", "state_dir", "socket"})
	if f == nil {
		return c
	}
	typ, tv := f.reqStr("type")
	switch {
	case tv == nil:
	case slices.Contains(signerTypes, typ):
		c.Type = typ
	case slices.Contains(futureSignerTypes, typ):
		p.add(tv.Line, "signer.type", ErrInvalid, nil, "signer type %q is not supported yet (supported: %s)", typ, strings.Join(signerTypes, ", "))
	default:
		p.add(tv.Line, "signer.type", ErrInvalid, nil, "unknown signer type %q (supported: %s)", typ, strings.Join(signerTypes, ", "))
	}
	// only reports fields that do not belong to the chosen type.
	only := func(types []string, names ...string) {
		for _, n := range names {
			if v := f.get(n); v != nil && c.Type != "" && !slices.Contains(types, c.Type) {
				p.add(v.Line, "signer."+n, ErrInvalid, nil, "only for signer type %s, not %s", strings.Join(types, " or "), c.Type)
			}
		}
	}
	only([]string{SignerSoftDAK}, "key", "certificate")
	only([]string{SignerYubiKey}, "serial", "reader", "slot", "pin_file", "attestation", "attestation_roots", "allow_last_retry", "replug_timeout")
	only([]string{SignerSoftDAK, SignerYubiKey}, "max_signatures", "state_dir")
	switch c.Type {
	case SignerSoftDAK:
		s, v := f.reqStr("key")
		c.Key = p.existingFile(v, "signer.key", s)
		s, v = f.reqStr("certificate")
		c.Certificate = p.existingFile(v, "signer.certificate", s)
	case SignerYubiKey:
		if f.required("serial") != nil {
			c.Serial = uint32(f.int("serial", 0, 1, 1<<32-1))
		}
		c.Reader, _ = f.str("reader")
		c.Slot = f.enum("slot", pivSlots)
		if c.Slot == "" {
			c.Slot = DefaultSlot
		}
		s, v := f.reqStr("pin_file")
		c.PINFile = p.existingFile(v, "signer.pin_file", s)
		c.Attestation = f.enum("attestation", attestationModes)
		c.AttestationRoots = p.fileList(f, "attestation_roots")
		c.AllowLastRetry = f.bool("allow_last_retry")
		c.ReplugTimeout = f.duration("replug_timeout")
	}
	c.MaxSignatures = int64(f.int("max_signatures", 0, 0, 1<<62))
	if s, v := f.str("state_dir"); v != nil && s != "" {
		c.StateDir = p.path(s)
	}
	if s, v := f.str("socket"); v != nil && s != "" {
		c.Socket = p.path(s)
		// sun_path holds 108 bytes with its NUL.
		if len(c.Socket) > 107 {
			p.add(v.Line, "signer.socket", ErrInvalid, nil, "socket path is %d bytes, longer than a Unix socket allows (107)", len(c.Socket))
		}
	} else if c.Type == SignerAgent {
		f.required("socket")
	}
	c.Intermediates = p.fileList(f, "intermediates")
	c.Roots = p.fileList(f, "roots")
	return c
}

func (p *parser) fileList(f *fields, name string) []string {
	list, nodes := f.strList(name)
	var out []string
	for i, s := range list {
		out = append(out, p.existingFile(nodes[i], index(join(f.path, name), i), s))
	}
	return out
}

func (p *parser) profile(top *fields) ProfileConfig {
	c := ProfileConfig{Extensions: DefaultExtensions, ValidityDays: DefaultValidityDays}
	top.required("profile")
	f := top.sub("profile", []string{"device_conf", "extensions", "device_type_field", "per_device_fields", "validity_days"})
	if f == nil {
		return c
	}
	s, v := f.reqStr("device_conf")
	c.DeviceConf = p.existingFile(v, "profile.device_conf", s)
	if s, v := f.str("extensions"); v != nil {
		if s == "" {
			p.add(v.Line, "profile.extensions", ErrInvalid, nil, "must not be empty (leave it out for %q)", DefaultExtensions)
		} else {
			c.Extensions = s
		}
	}
	c.DeviceTypeField, _ = f.str("device_type_field")
	fieldsList, nodes := f.strList("per_device_fields")
	for i, s := range fieldsList {
		if j := slices.Index(fieldsList[:i], s); j >= 0 {
			p.add(nodes[i].Line, index("profile.per_device_fields", i), ErrDuplicate, nil, "%q is listed twice (also per_device_fields[%d])", s, j)
		}
	}
	c.PerDeviceFields = fieldsList
	c.ValidityDays = f.int("validity_days", DefaultValidityDays, 1, MaxValidityDays)
	return c
}

var targetName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func (p *parser) targets(top *fields) []Target {
	v := top.required("targets")
	if v == nil {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.add(v.Line, "targets", ErrType, nil, "want a list of targets, got %s", describe(v))
		return nil
	}
	if len(v.Content) == 0 {
		p.add(v.Line, "targets", ErrInvalid, nil, "want at least one target")
		return nil
	}
	var out []Target
	names := map[string]string{}    // name -> path of the target that has it
	consoles := map[string]string{} // console identity -> path
	for i, item := range v.Content {
		path := index("targets", i)
		item = resolve(item)
		if isNull(item) {
			p.add(item.Line, path, ErrType, nil, "want a mapping, got nothing")
			continue
		}
		f := p.mapping(item, path, []string{"name", "family", "console", "power", "acs", "ack", "flash"})
		if f == nil {
			continue
		}
		var t Target
		if name, nv := f.reqStr("name"); nv != nil {
			switch {
			case !targetName.MatchString(name) || name == "." || name == "..":
				p.add(nv.Line, path+".name", ErrInvalid, nil, "%q: use only letters, digits, '_', '.' and '-' (it names output files)", name)
			case names[name] != "":
				p.add(nv.Line, path+".name", ErrDuplicate, nil, "duplicate target name %q (also %s)", name, names[name])
			default:
				names[name] = path
			}
			t.Name = name
		}
		if fam, fv := f.reqStr("family"); fv != nil {
			switch {
			case slices.Contains(families, fam):
				t.Family = fam
			case slices.Contains(futureFamilies, fam):
				p.add(fv.Line, path+".family", ErrInvalid, nil, "family %q is not supported yet (supported: %s)", fam, strings.Join(families, ", "))
			default:
				p.add(fv.Line, path+".family", ErrInvalid, nil, "unknown family %q (supported: %s)", fam, strings.Join(families, ", "))
			}
		}
		t.Console = p.console(f, path, consoles)
		t.Power = p.power(f, path)
		t.ACS = p.acs(f, path, t.Family)
		t.ACK = p.ack(f, path, t.Family)
		t.Flash = p.flash(f, path)
		out = append(out, t)
	}
	return out
}

var hex4 = regexp.MustCompile(`^[0-9A-Fa-f]{4}$`)

func (p *parser) console(top *fields, tpath string, seen map[string]string) Console {
	c := Console{Baud: DefaultBaud, DataBits: DefaultDataBits}
	path := tpath + ".console"
	top.required("console")
	f := top.sub("console", []string{"port", "usb", "baud", "data_bits", "parity", "stop_bits", "reopen"})
	if f == nil {
		return c
	}
	var id string // what identifies the console, to catch two targets on one port
	var idLine int
	switch {
	case f.has("port") && f.has("usb"):
		p.add(f.keys["usb"].Line, path, ErrInvalid, nil, "set either \"port\" or \"usb\", not both")
	case !f.has("port") && !f.has("usb"):
		if !f.suggested["port"] && !f.suggested["usb"] {
			p.add(f.line, path, ErrMissingField, nil, "missing \"port\" or \"usb\" (one of them says where the console is)")
		}
	case f.has("port"):
		if s, v := f.reqStr("port"); v != nil {
			c.Port = s
			id, idLine = "port "+strconv.Quote(s), v.Line
		}
	default:
		c.USB = p.usb(f.sub("usb", []string{"vid", "pid", "serial"}))
		if c.USB != nil {
			id = fmt.Sprintf("usb %s:%s serial %q", c.USB.VID, c.USB.PID, c.USB.Serial)
			idLine = f.get("usb").Line
		}
	}
	if id != "" {
		if other, dup := seen[id]; dup {
			p.add(idLine, path, ErrDuplicate, nil, "%s is already the console of %s", id, other)
		} else {
			seen[id] = tpath
		}
	}
	c.Baud = f.int("baud", DefaultBaud, 1, 1<<31-1)
	c.DataBits = f.int("data_bits", DefaultDataBits, 5, 8)
	c.Parity = f.enum("parity", parities)
	c.StopBits = f.enum("stop_bits", stopBits)
	c.Reopen = f.duration("reopen")
	return c
}

func (p *parser) usb(f *fields) *USBID {
	if f == nil {
		return nil
	}
	id := &USBID{}
	ok := true
	for _, x := range []struct {
		name string
		dst  *string
	}{{"vid", &id.VID}, {"pid", &id.PID}} {
		s, v := f.reqStr(x.name)
		if v == nil {
			ok = false
			continue
		}
		// Accept 0x0403 as well; unquoted 0403 arrives as written because
		// the parser keeps the scalar's text.
		h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
		if !hex4.MatchString(h) {
			p.add(v.Line, join(f.path, x.name), ErrInvalid, nil, "want 4 hex digits like \"0403\", got %q", s)
			ok = false
			continue
		}
		*x.dst = strings.ToLower(h)
	}
	id.Serial, _ = f.str("serial")
	if !ok {
		return nil
	}
	return id
}

func (p *parser) power(top *fields, tpath string) *Power {
	path := tpath + ".power"
	all := []string{"type", "hub", "port", "on", "off", "cycle", "state", "on_pattern", "off_pattern", "timeout", "socket", "off_time"}
	f := top.sub("power", all)
	if f == nil {
		return nil
	}
	pw := &Power{}
	typ, tv := f.reqStr("type")
	if tv != nil && !slices.Contains(powerTypes, typ) {
		p.add(tv.Line, path+".type", ErrInvalid, nil, "unknown power type %q (supported: %s)", typ, strings.Join(powerTypes, ", "))
		return pw
	}
	pw.Type = typ
	// Fields of the other types are mistakes, not harmless extras: a
	// "hub" under type command would silently do nothing.
	belongs := map[string][]string{
		"hub": {PowerUSBHub}, "port": {PowerUSBHub, PowerCommand},
		"on": {PowerCommand}, "off": {PowerCommand}, "cycle": {PowerCommand}, "state": {PowerCommand},
		"on_pattern": {PowerCommand}, "off_pattern": {PowerCommand}, "timeout": {PowerCommand},
		"socket": {PowerSim},
	}
	for _, name := range all {
		if k, ok := f.keys[name]; ok && typ != "" && belongs[name] != nil && !slices.Contains(belongs[name], typ) {
			p.add(k.Line, join(path, name), ErrInvalid, nil, "only valid for power type %s", strings.Join(belongs[name], ", "))
		}
	}
	pw.OffTime = f.duration("off_time")
	switch typ {
	case PowerUSBHub:
		pw.Hub, _ = f.reqStr("hub")
		if f.required("port") != nil {
			pw.Port = f.int("port", 0, 1, 255)
		}
	case PowerCommand:
		pw.On, _ = f.reqStr("on")
		pw.Off, _ = f.reqStr("off")
		pw.Cycle, _ = f.str("cycle")
		pw.State, _ = f.str("state")
		pw.Port = f.int("port", 0, 0, 1<<16)
		pw.Timeout = f.duration("timeout")
		for _, x := range []struct {
			name string
			dst  *string
		}{{"on_pattern", &pw.OnPattern}, {"off_pattern", &pw.OffPattern}} {
			if s, v := f.str(x.name); v != nil {
				if _, err := regexp.Compile(s); err != nil || s == "" {
					p.add(v.Line, join(path, x.name), ErrInvalid, err, "want a non-empty regular expression, got %q", s)
					continue
				}
				*x.dst = s
			}
		}
	case PowerSim:
		if s, v := f.reqStr("socket"); v != nil {
			pw.Socket = p.path(s)
		}
	}
	return pw
}

func (p *parser) ack(top *fields, tpath, family string) *ACKOptions {
	path := tpath + ".ack"
	n := top.get("ack")
	if n != nil && family != "" && family != FamilyACK {
		p.add(n.Line, path, ErrInvalid, nil, "only valid for family ack")
		return nil
	}
	f := top.sub("ack", []string{"mode", "module", "product_config", "boot_timeout", "exchange_timeout", "slow_timeout", "external"})
	if f == nil {
		return nil
	}
	o := &ACKOptions{Mode: ACKModeNative}
	if m := f.enum("mode", ackModes); m != "" {
		o.Mode = m
	}
	o.Module, _ = f.str("module")
	if s, v := f.str("product_config"); v != nil {
		o.ProductConfig = p.existingFile(v, path+".product_config", s)
	}
	o.BootTimeout = f.duration("boot_timeout")
	o.ExchangeTimeout = f.duration("exchange_timeout")
	o.SlowTimeout = f.duration("slow_timeout")
	ef := f.sub("external", []string{"command", "pin_file", "success", "failure", "timeout"})
	switch {
	case o.Mode == ACKModeExternal && ef == nil:
		if !f.suggested["external"] {
			p.add(f.line, path, ErrMissingField, nil, "mode external needs an \"external\" section (the vendor tool's command)")
		}
	case o.Mode != ACKModeExternal && ef != nil:
		p.add(f.keys["external"].Line, path+".external", ErrInvalid, nil, "only valid with mode external")
	case ef != nil:
		x := &ACKExternal{}
		if f.keys["external"] != nil && ef.required("command") != nil {
			x.Command, _ = ef.strList("command")
			if len(x.Command) == 0 {
				p.add(ef.get("command").Line, path+".external.command", ErrInvalid, nil, "want the tool and its arguments as a list, e.g. [module-utility, provision, --port, \"{port}\"]")
			}
		}
		if s, v := ef.str("pin_file"); v != nil {
			x.PINFile = p.existingFile(v, path+".external.pin_file", s)
		}
		for _, l := range []struct {
			name string
			dst  *[]string
		}{{"success", &x.Success}, {"failure", &x.Failure}} {
			list, nodes := ef.strList(l.name)
			for i, s := range list {
				if _, err := regexp.Compile(s); err != nil {
					p.add(nodes[i].Line, index(path+".external."+l.name, i), ErrInvalid, err, "not a valid regular expression: %v", err)
					continue
				}
				*l.dst = append(*l.dst, s)
			}
		}
		if len(x.Success) == 0 && ef.get("success") == nil {
			p.add(ef.line, path+".external", ErrMissingField, nil, "missing \"success\": the patterns in the tool's output that mean it worked (an exit status alone is not trusted)")
		}
		x.Timeout = ef.duration("timeout")
		o.External = x
	}
	return o
}

func (p *parser) flash(top *fields, tpath string) *Flash {
	path := tpath + ".flash"
	f := top.sub("flash", []string{"method", "flash_size", "enter", "enter_command", "strap_on", "strap_off", "prompt",
		"load_command", "boot_command", "version_command", "timeout", "dfu"})
	if f == nil {
		return nil
	}
	fl := &Flash{}
	if m, v := f.reqStr("method"); v != nil {
		if !slices.Contains(flashMethods, m) {
			p.add(v.Line, path+".method", ErrInvalid, nil, "unknown flash method %q (supported: %s)", m, strings.Join(flashMethods, ", "))
		}
		fl.Method = m
	}
	if s, v := f.str("flash_size"); v != nil {
		n, err := parseSize(s)
		if err != nil {
			p.add(v.Line, path+".flash_size", ErrInvalid, err, "want a size like 1048576, 512K or 4M, got %q", s)
		}
		fl.FlashSize = n
	}
	fl.Enter = f.enum("enter", enterModes)
	fl.EnterCommand, _ = f.str("enter_command")
	fl.StrapOn, _ = f.str("strap_on")
	fl.StrapOff, _ = f.str("strap_off")
	if fl.Enter == EnterStrap && (fl.StrapOn == "" || fl.StrapOff == "") {
		p.add(f.line, path, ErrMissingField, nil, "enter: strap needs strap_on and strap_off (the commands that set and release the boot strap)")
	}
	if s, v := f.str("prompt"); v != nil {
		if _, err := regexp.Compile(s); err != nil || s == "" {
			p.add(v.Line, path+".prompt", ErrInvalid, err, "want a non-empty regular expression, got %q", s)
		} else {
			fl.Prompt = s
		}
	}
	fl.LoadCommand, _ = f.str("load_command")
	fl.BootCommand, _ = f.str("boot_command")
	fl.VersionCommand, _ = f.str("version_command")
	fl.Timeout = f.duration("timeout")
	df := f.sub("dfu", []string{"vid", "pid", "serial", "alt", "address", "mass_erase", "runtime_vid", "runtime_pid"})
	switch {
	case fl.Method == MethodDFU && df == nil:
		if !f.suggested["dfu"] {
			p.add(f.line, path, ErrMissingField, nil, "method dfu needs a \"dfu\" section (vid and pid of the device in DFU mode)")
		}
	case fl.Method != MethodDFU && df != nil:
		p.add(f.keys["dfu"].Line, path+".dfu", ErrInvalid, nil, "only valid with method dfu")
	case df != nil:
		d := &FlashDFU{}
		if id := p.usb(df); id != nil {
			d.VID, d.PID, d.Serial = id.VID, id.PID, id.Serial
		}
		d.Alt = df.int("alt", 0, 0, 255)
		if s, v := df.str("address"); v != nil {
			a, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 32)
			if err != nil {
				p.add(v.Line, path+".dfu.address", ErrInvalid, err, "want a 32-bit hex address like 0x08000000, got %q", s)
			}
			d.Address = uint32(a)
		}
		d.MassErase = df.bool("mass_erase")
		for _, x := range []struct {
			name string
			dst  *string
		}{{"runtime_vid", &d.RuntimeVID}, {"runtime_pid", &d.RuntimePID}} {
			if s, v := df.str(x.name); v != nil {
				h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
				if !hex4.MatchString(h) {
					p.add(v.Line, path+".dfu."+x.name, ErrInvalid, nil, "want 4 hex digits like \"0483\", got %q", s)
					continue
				}
				*x.dst = strings.ToLower(h)
			}
		}
		fl.DFU = d
	}
	return fl
}

// parseSize reads a byte count with an optional K, M or G suffix (powers of 1024).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, err
	}
	if n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%d%s is out of range", n, s[len(t):])
	}
	return n * mult, nil
}

var dataDir = regexp.MustCompile(`^/[A-Za-z0-9_./-]*$`)

func (p *parser) acs(top *fields, tpath, family string) *ACSOptions {
	path := tpath + ".acs"
	n := top.get("acs")
	if n != nil && family != "" && family != FamilyACS {
		p.add(n.Line, path, ErrInvalid, nil, "only valid for family acs")
		return nil
	}
	f := top.sub("acs", []string{"prompt", "data_dir", "boot_timeout", "command_timeout", "commands"})
	if f == nil {
		return nil
	}
	o := &ACSOptions{}
	if s, v := f.str("prompt"); v != nil {
		if _, err := regexp.Compile(s); err != nil {
			p.add(v.Line, path+".prompt", ErrInvalid, err, "not a valid regular expression: %v", err)
		} else if s == "" {
			p.add(v.Line, path+".prompt", ErrInvalid, nil, "must not be empty (it would match anywhere)")
		} else {
			o.Prompt = s
		}
	}
	if s, v := f.str("data_dir"); v != nil {
		// The directory goes into shell commands on the device; keep it to
		// characters no shell treats specially.
		if !dataDir.MatchString(s) {
			p.add(v.Line, path+".data_dir", ErrInvalid, nil, "want an absolute device path of letters, digits and _ . / -, got %q", s)
		} else {
			o.DataDir = s
		}
	}
	o.BootTimeout = f.duration("boot_timeout")
	o.CommandTimeout = f.duration("command_timeout")
	cf := f.sub("commands", acsCommands)
	for _, name := range acsCommands {
		if s, v := cf.str(name); v != nil {
			if strings.TrimSpace(s) == "" {
				p.add(v.Line, path+".commands."+name, ErrInvalid, nil, "must not be empty")
				continue
			}
			if o.Commands == nil {
				o.Commands = map[string]string{}
			}
			o.Commands[name] = s
		}
	}
	return o
}
