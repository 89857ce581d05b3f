package bench

import (
	"errors"
	"regexp"
	"slices"
	"strings"
)

// keysProbe is a bench file with an unknown key in every mapping the parser
// reads; each refusal lists the keys that mapping accepts.
const keysProbe = `zzqzzqzzq: 1
signer: {type: softdak, zzqzzqzzq: 1}
profile: {zzqzzqzzq: 1}
ledger: {zzqzzqzzq: 1}
factory: {zzqzzqzzq: 1, labels: {zzqzzqzzq: 1}, sidewalk: {zzqzzqzzq: 1}}
targets:
  - zzqzzqzzq: 1
    name: a
    family: acs
    console: {usb: {vid: "0403", pid: "6001", zzqzzqzzq: 1}, zzqzzqzzq: 1}
    power: {type: sim, zzqzzqzzq: 1}
    acs: {zzqzzqzzq: 1, commands: {zzqzzqzzq: 1}}
    flash: {method: dfu, zzqzzqzzq: 1, dfu: {zzqzzqzzq: 1}}
  - name: b
    family: ack
    console: {port: /dev/null}
    ack: {zzqzzqzzq: 1, external: {zzqzzqzzq: 1}}
`

var (
	knownList = regexp.MustCompile(`^unknown field "zzqzzqzzq" \(known: (.*)\)$`)
	listIndex = regexp.MustCompile(`\[[0-9]+\]`)
)

// Keys lists every key a bench file may hold, as dotted paths with "[]" for
// a list's items ("signer.type", "targets[].console.usb.vid"), mappings
// ("targets[].flash.dfu") included, sorted. It asks the parser itself (an
// unknown key in each of its mappings), so it is the parser's own list: the
// README's bench table and fixtures/benches/example.yaml are tested against it.
func Keys() []string {
	_, err := Parse("keys-probe.yaml", []byte(keysProbe))
	var errs Errors
	if !errors.As(err, &errs) {
		return nil
	}
	var keys []string
	for _, e := range errs {
		m := knownList.FindStringSubmatch(e.Msg)
		if m == nil || !errors.Is(e, ErrUnknownField) {
			continue
		}
		prefix := listIndex.ReplaceAllString(e.Field, "[]")
		if prefix != "" {
			prefix += "."
		}
		for _, k := range strings.Split(m[1], ", ") {
			keys = append(keys, prefix+k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}
