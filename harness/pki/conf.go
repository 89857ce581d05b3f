package pki

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// This file reads OpenSSL's config syntax (NCONF "default" flavour, the one
// openssl req and x509 -extfile use) closely enough to read the files the AVS
// console hands out, and refuses loudly what it does not implement
// (.include, .pragma, section::key assignments, $ENV::x).
//
// Semantics mirrored from OpenSSL 3.0 conf_def.c, checked against the real
// openssl in conf_test.go:
//   - "[ name ]" opens (or reopens) a section; keys before any section are
//     in the "default" section.
//   - "#" starts a comment outside quotes; a trailing "\" joins the next line.
//   - values: leading and trailing blanks dropped; "..." and '...' quote
//     literally (with \ escaping the next character); outside quotes \n \r \t
//     \b are control characters and \x is x; $var, ${var}, $(var),
//     $sect::var and ${sect::var} substitute a value defined earlier in the
//     current or the default section.
//   - a key given twice keeps the later value, at the later position.
//   - a value whose $variables would expand past maxConfValueLength is
//     refused, as str_copy refuses it ("variable expansion too long").

const defaultSection = "default"

// maxConfValueLength is OpenSSL's MAX_CONF_VALUE_LENGTH (conf_def.c, 64 KiB).
// str_copy keeps a running size that starts at the raw value's length plus
// one (its NUL) and, at each $variable, grows by the variable's value minus
// the reference's own length; past this limit the value is refused. Checked
// against Debian's openssl 3.0 at the boundary (conf_test.go): a 65,535-byte
// value through "b = $a" is accepted, 65,536 bytes are refused. Every stored
// value is thus at most 64 KiB, and nested expansion ("bombs") stays linear.
const maxConfValueLength = 65536

type confEntry struct {
	section string
	key     string
	value   string
	line    int
}

type confFile struct {
	path     string
	sections map[string][]*confEntry
	lines    map[string]int // line where each section was first opened
}

// section returns the entries of a section in file order, and whether it exists.
func (c *confFile) section(name string) ([]*confEntry, bool) {
	s, ok := c.sections[name]
	return s, ok
}

// lookup finds key in section, falling back to the default section (as
// OpenSSL's variable lookup and NCONF_get_string do).
func (c *confFile) lookup(section, key string) (*confEntry, bool) {
	for _, e := range c.sections[section] {
		if e.key == key {
			return e, true
		}
	}
	if section != defaultSection {
		for _, e := range c.sections[defaultSection] {
			if e.key == key {
				return e, true
			}
		}
	}
	return nil, false
}

// get finds key in exactly this section.
func (c *confFile) get(section, key string) (*confEntry, bool) {
	for _, e := range c.sections[section] {
		if e.key == key {
			return e, true
		}
	}
	return nil, false
}

func (c *confFile) errorf(line int, section, key string, sentinel error, format string, args ...any) *ProfileError {
	if section == defaultSection {
		section = ""
	}
	return &ProfileError{Path: c.path, Line: line, Section: section, Key: key, Msg: fmt.Sprintf(format, args...), Err: sentinel}
}

func isConfWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// isConfAlnum is OpenSSL's CONF_ALNUM: letters, digits and underscore.
func isConfAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// isConfNameChar is OpenSSL's CONF_ALNUM_PUNCT, the characters of a key.
func isConfNameChar(c byte) bool {
	return isConfAlnum(c) || strings.IndexByte("!.%&*+,/;?@^~|-", c) >= 0
}

func parseConf(path string, data []byte) (*confFile, error) {
	c := &confFile{path: path, sections: map[string][]*confEntry{defaultSection: nil}, lines: map[string]int{defaultSection: 0}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	section := defaultSection
	lineNo := 0
	var pending strings.Builder
	startLine := 0
	for sc.Scan() {
		lineNo++
		text := strings.TrimRight(sc.Text(), "\r")
		if pending.Len() == 0 {
			startLine = lineNo
		}
		// A line ending in an odd number of backslashes continues on the next.
		n := len(text) - len(strings.TrimRight(text, `\`))
		if n%2 == 1 {
			pending.WriteString(text[:len(text)-1])
			continue
		}
		pending.WriteString(text)
		logical := pending.String()
		pending.Reset()
		var err error
		section, err = c.parseLine(logical, startLine, section)
		if err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading profile %s: %w", path, err)
	}
	if pending.Len() > 0 {
		if _, err := c.parseLine(pending.String(), startLine, section); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// stripComment removes a '#' comment, skipping quoted text and escapes.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '#':
			return s[:i]
		case '\\':
			i++
		case '"', '\'':
			q := s[i]
			for i++; i < len(s) && s[i] != q; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		}
	}
	return s
}

func (c *confFile) parseLine(line string, lineNo int, section string) (string, error) {
	s := strings.TrimLeft(stripComment(line), " \t\r")
	s = strings.TrimRight(s, " \t\r")
	if s == "" {
		return section, nil
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return section, c.errorf(lineNo, section, "", ErrProfileSyntax, "missing close square bracket in %q", s)
		}
		if rest := strings.TrimSpace(s[end+1:]); rest != "" {
			return section, c.errorf(lineNo, section, "", ErrProfileSyntax, "text after section header: %q", rest)
		}
		name := strings.Trim(s[1:end], " \t")
		if name == "" {
			return section, c.errorf(lineNo, section, "", ErrProfileSyntax, "empty section name")
		}
		for i := 0; i < len(name); i++ {
			if !isConfNameChar(name[i]) && !isConfWS(name[i]) {
				return section, c.errorf(lineNo, section, "", ErrProfileSyntax, "character %q not allowed in section name %q", name[i], name)
			}
		}
		if _, ok := c.sections[name]; !ok {
			c.sections[name] = nil
			c.lines[name] = lineNo
		}
		return name, nil
	}
	i := 0
	for i < len(s) && isConfNameChar(s[i]) {
		i++
	}
	key := s[:i]
	if key == "" {
		return section, c.errorf(lineNo, section, "", ErrProfileSyntax, "expected a key or [section], found %q", s)
	}
	if strings.HasPrefix(key, ".include") || strings.HasPrefix(key, ".pragma") {
		return section, c.errorf(lineNo, section, key, ErrProfileUnsupported, "%s directives are not supported in a product profile", key)
	}
	rest := s[i:]
	if strings.HasPrefix(rest, "::") {
		return section, c.errorf(lineNo, section, key, ErrProfileUnsupported, "section::key assignments are not supported")
	}
	rest = strings.TrimLeft(rest, " \t\r")
	if rest == "" || rest[0] != '=' {
		return section, c.errorf(lineNo, section, key, ErrProfileSyntax, "missing equal sign")
	}
	raw := strings.TrimLeft(rest[1:], " \t\r")
	value, err := c.expandValue(raw, section, key, lineNo)
	if err != nil {
		return section, err
	}
	c.set(&confEntry{section: section, key: key, value: value, line: lineNo})
	return section, nil
}

// set adds an entry; a key already present in the section is replaced and the
// new entry goes to the end, as OpenSSL's _CONF_add_string does.
func (c *confFile) set(e *confEntry) {
	entries := c.sections[e.section]
	for i, old := range entries {
		if old.key == e.key {
			entries = append(entries[:i:i], entries[i+1:]...)
			break
		}
	}
	c.sections[e.section] = append(entries, e)
}

// expandValue applies OpenSSL's str_copy: quotes, escapes and $variables.
func (c *confFile) expandValue(raw, section, key string, lineNo int) (string, error) {
	var b strings.Builder
	size := len(raw) + 1 // str_copy's buffer length, see maxConfValueLength
	for i := 0; i < len(raw); {
		ch := raw[i]
		switch {
		case ch == '"' || ch == '\'':
			q := ch
			i++
			for i < len(raw) && raw[i] != q {
				if raw[i] == '\\' {
					i++
					if i >= len(raw) {
						break
					}
				}
				b.WriteByte(raw[i])
				i++
			}
			if i < len(raw) {
				i++ // closing quote
			}
		case ch == '\\':
			i++
			if i >= len(raw) {
				return b.String(), nil
			}
			switch e := raw[i]; e {
			case 'r':
				b.WriteByte('\r')
			case 'n':
				b.WriteByte('\n')
			case 'b':
				b.WriteByte('\b')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(e)
			}
			i++
		case ch == '$':
			val, n, err := c.expandVar(raw[i:], section, key, lineNo)
			if err != nil {
				return "", err
			}
			size += len(val) - n
			if size > maxConfValueLength {
				return "", c.errorf(lineNo, section, key, ErrProfileInvalidValue,
					"variable expansion too long: with %s the value of %s would pass %d bytes, openssl's limit (MAX_CONF_VALUE_LENGTH)",
					raw[i:i+n], key, maxConfValueLength)
			}
			b.WriteString(val)
			i += n
		default:
			b.WriteByte(ch)
			i++
		}
	}
	return b.String(), nil
}

// expandVar resolves the variable reference at the start of s ("$..."),
// returning its value and how many bytes of s it used.
func (c *confFile) expandVar(s, section, key string, lineNo int) (string, int, error) {
	i := 1
	var closer byte
	if i < len(s) && (s[i] == '{' || s[i] == '(') {
		closer = '}'
		if s[i] == '(' {
			closer = ')'
		}
		i++
	}
	scanName := func() string {
		start := i
		for i < len(s) && isConfAlnum(s[i]) {
			i++
		}
		return s[start:i]
	}
	sect := section
	name := scanName()
	if strings.HasPrefix(s[i:], "::") {
		sect = name
		i += 2
		name = scanName()
	}
	if closer != 0 {
		if i >= len(s) || s[i] != closer {
			return "", 0, c.errorf(lineNo, section, key, ErrProfileSyntax, "no close brace in variable reference %q", s)
		}
		i++
	}
	if sect == "ENV" {
		return "", 0, c.errorf(lineNo, section, key, ErrProfileUnsupported, "environment variable $ENV::%s: a product profile must not depend on the environment", name)
	}
	if name == "" {
		return "", 0, c.errorf(lineNo, section, key, ErrProfileSyntax, "'$' without a variable name (write \\$ for a literal dollar)")
	}
	e, ok := c.lookup(sect, name)
	if !ok {
		return "", 0, c.errorf(lineNo, section, key, ErrProfileSyntax, "variable $%s has no value", name)
	}
	return e.value, i, nil
}
