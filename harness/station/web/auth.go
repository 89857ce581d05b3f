package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
)

// TokenCookie is the cookie a ?token= visit sets.
const TokenCookie = "hil_station_token"

// MinTokenLen is the shortest token Listen and Serve accept: a token guards stop/start on a
// network, so it must not be guessable.
const MinTokenLen = 16

// NewToken returns a fresh random token (32 hex digits) for Options.Token.
func NewToken() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return short)
	return hex.EncodeToString(b[:])
}

// authorize admits requests carrying the token (when one is set). Without a token the server
// is on loopback, and only loopback host names are admitted: a web site the operator visits
// cannot reach the page through DNS rebinding.
func (s *Server) authorize(next http.Handler) http.Handler {
	token := s.opts.Token
	if token == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !loopbackHost(r.Host) {
				httpError(w, http.StatusForbidden, "host %q refused: this page is served on loopback only (open it as http://127.0.0.1:PORT/)", r.Host)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	want := sha256.Sum256([]byte(token))
	// match compares digests so the time taken says nothing about the token, its length included.
	match := func(got string) bool {
		g := sha256.Sum256([]byte(got))
		return subtle.ConstantTimeCompare(g[:], want[:]) == 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Has("token") {
			if (r.Method != http.MethodGet && r.Method != http.MethodHead) || !match(q.Get("token")) {
				httpError(w, http.StatusUnauthorized, "wrong token in the address")
				return
			}
			http.SetCookie(w, &http.Cookie{
				Name: TokenCookie, Value: q.Get("token"), Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode,
			})
			// The same page without the token, so it leaves the address bar and history.
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		if auth := r.Header.Get("Authorization"); auth != "" {
			if got, ok := strings.CutPrefix(auth, "Bearer "); ok && match(got) {
				next.ServeHTTP(w, r)
				return
			}
			httpError(w, http.StatusUnauthorized, "wrong token in the Authorization header")
			return
		}
		if c, err := r.Cookie(TokenCookie); err == nil && match(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		httpError(w, http.StatusUnauthorized, "this station's page needs its token: open it once as /?token=TOKEN (the station printed it), or send \"Authorization: Bearer TOKEN\"")
	})
}

// IsLoopback says whether a listen address (HOST:PORT, or a bare host) is on loopback:
// localhost or a loopback IP. An empty host (":8080") is every interface, not loopback.
// Listen serves such an address without a token.
func IsLoopback(addr string) bool { return loopbackHost(addr) }

// loopbackHost says whether a Host header or listen address's host is loopback.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
