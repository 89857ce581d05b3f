package console

import (
	"slices"
	"strings"
	"sync"
)

// Redacted replaces every secret in redacted text.
const Redacted = "[REDACTED]"

// Redactor replaces known secrets (PINs, key material) with [REDACTED]. It
// is safe for concurrent use, and a nil *Redactor redacts nothing, so
// callers never need to check.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string // longest first, so a secret containing another goes whole
	rep     *strings.Replacer
}

// NewRedactor returns a Redactor for secrets; empty strings are ignored.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		r.Add(s)
	}
	return r
}

// Add registers one more secret. Empty strings and repeats are ignored.
func (r *Redactor) Add(secret string) {
	if r == nil || secret == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Contains(r.secrets, secret) {
		return
	}
	r.secrets = append(r.secrets, secret)
	// strings.Replacer tries old strings in argument order at each position.
	slices.SortStableFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(r.secrets))
	for _, s := range r.secrets {
		pairs = append(pairs, s, Redacted)
	}
	r.rep = strings.NewReplacer(pairs...)
}

// Redact returns s with every secret replaced by [REDACTED].
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	rep := r.rep
	r.mu.RUnlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// list returns a snapshot of the secrets, longest first.
func (r *Redactor) list() []string {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.secrets)
}

// safeCut moves a proposed cut k in buf left until no secret occurrence, and
// no prefix of a secret that further bytes could complete, starts before k
// and ends after it. Bytes before the result can be redacted and emitted on
// their own without ever splitting a secret across two emissions.
func safeCut(buf []byte, k int, secrets []string) int {
	for changed := true; changed && k > 0; {
		changed = false
		for _, s := range secrets {
			for j := max(0, k-len(s)+1); j < k; j++ {
				n := min(len(s), len(buf)-j)
				if string(buf[j:j+n]) == s[:n] {
					k, changed = j, true
					break
				}
			}
		}
	}
	return k
}
