package bench

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestKeysReadEveryMapping: Keys found the parser's mappings, down to the deepest.
func TestKeysReadEveryMapping(t *testing.T) {
	keys := Keys()
	for _, want := range []string{"signer.type", "signer.socket", "profile.device_type_field", "ledger.dsn", "output",
		"targets[].name", "targets[].console.usb.vid", "targets[].power.off_time", "targets[].acs.commands.digest",
		"targets[].ack.external.command", "targets[].flash.dfu.runtime_pid"} {
		if !slices.Contains(keys, want) {
			t.Errorf("Keys() has no %s: %q", want, keys)
		}
	}
}

var (
	backticked = regexp.MustCompile("`([^`]+)`")
	keyToken   = regexp.MustCompile(`^\.?[a-z_]+(\[\])?(\.[a-z_]+(\[\])?)*$`)
)

// readmeBenchTable reads the README's bench table: the keys of its first
// column ("`signer.serial`, `.reader`" is signer.serial and signer.reader),
// and for each key the row's second column.
func readmeBenchTable(t *testing.T) map[string]string {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## The bench file\n")
	if !ok {
		t.Fatal(`README.md has no "## The bench file" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, " | ")
		if len(cells) < 2 {
			t.Errorf("README bench table row %q: want | key | meaning |", line)
			continue
		}
		parent := ""
		for _, m := range backticked.FindAllStringSubmatch(cells[0], -1) {
			k := m[1]
			if !keyToken.MatchString(k) {
				t.Errorf("README bench table: %q in %q is not a key", k, cells[0])
				continue
			}
			if strings.HasPrefix(k, ".") {
				k = parent + k
			} else if i := strings.LastIndex(k, "."); i >= 0 {
				parent = k[:i]
			}
			rows[k] = strings.Join(cells[1:], " | ")
		}
	}
	return rows
}

// documented says whether key is in docs: itself, a key under it (a mapping
// documented by its fields), or its parent's row naming it in backticks
// ("`targets[].acs.commands` | override any of `key_gen`, ...").
func documented(key string, docs map[string]string) bool {
	if _, ok := docs[key]; ok {
		return true
	}
	for d := range docs {
		if strings.HasPrefix(d, key+".") || strings.HasPrefix(d, key+"[].") {
			return true
		}
	}
	if i := strings.LastIndex(key, "."); i >= 0 {
		if row, ok := docs[key[:i]]; ok && strings.Contains(row, "`"+key[i+1:]+"`") {
			return true
		}
	}
	return false
}

// TestREADMEBenchTableMatchesParser: every key the parser accepts has a row
// in the README's bench table, and every key the table documents is accepted.
func TestREADMEBenchTableMatchesParser(t *testing.T) {
	keys := Keys()
	docs := readmeBenchTable(t)
	for _, k := range keys {
		if !documented(k, docs) {
			t.Errorf("README.md bench table does not document %s", k)
		}
	}
	for d := range docs {
		if !slices.Contains(keys, d) {
			t.Errorf("README.md bench table documents %s, which the parser does not accept", d)
		}
	}
}

// commentedKey is a commented-out line of YAML in example.yaml: "# key: value"
// or "#   key: value" (an alternative shown but not active).
var commentedKey = regexp.MustCompile(`^(\s*)# ?(\s*)([a-z_]+:(\s.*)?)$`)

// exampleKeys reads the keys fixtures/benches/example.yaml shows, active or
// commented out, as Keys spells them.
func exampleKeys(t *testing.T) map[string]string {
	data, err := os.ReadFile("../../fixtures/benches/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if m := commentedKey.FindStringSubmatch(l); m != nil {
			lines[i] = m[1] + m[2] + m[3]
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(strings.Join(lines, "\n")), &doc); err != nil {
		t.Fatalf("example.yaml with its commented-out keys restored: %v", err)
	}
	keys := map[string]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				if c.Kind == yaml.MappingNode {
					walk(c, path+"[]")
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if path != "" {
					k = path + "." + k
				}
				keys[k] = ""
				walk(n.Content[i+1], k)
			}
		}
	}
	walk(&doc, "")
	return keys
}

// TestExampleBenchMatchesParser: fixtures/benches/example.yaml shows every
// key the parser accepts (active, or commented out as an alternative), and
// only keys it accepts.
func TestExampleBenchMatchesParser(t *testing.T) {
	keys := Keys()
	shown := exampleKeys(t)
	for _, k := range keys {
		if _, ok := shown[k]; !ok {
			t.Errorf("fixtures/benches/example.yaml does not show %s", k)
		}
	}
	for k := range shown {
		if !slices.Contains(keys, k) {
			t.Errorf("fixtures/benches/example.yaml shows %s, which the parser does not accept", k)
		}
	}
}
