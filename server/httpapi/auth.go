package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// MaxRequestIDLen is the longest X-Request-Id kept from a request.
const MaxRequestIDLen = 128

type requestIDKey struct{}

// RequestID returns the request id the handler put in a request's context,
// or "" if there is none.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestID returns the client's id when it is 1 to MaxRequestIDLen visible
// ASCII characters, else a new random one.
func requestID(client string) string {
	if ValidRequestID(client) {
		return client
	}
	return rand.Text()
}

// ValidRequestID reports whether id may be kept as a request id: 1 to
// MaxRequestIDLen visible ASCII characters. The service applies the same
// rule to the x-request-id metadata of gRPC calls.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// tokens holds the SHA-256 of the configured bearer tokens. Comparing
// digests of fixed length in constant time, against every token, reveals
// neither a token's length nor which one matched.
type tokens struct {
	api, admin [][sha256.Size]byte
}

func newTokens(api, admin []string) tokens {
	var t tokens
	for _, s := range api {
		if s != "" {
			t.api = append(t.api, sha256.Sum256([]byte(s)))
		}
	}
	for _, s := range admin {
		if s != "" {
			t.admin = append(t.admin, sha256.Sum256([]byte(s)))
		}
	}
	return t
}

// apiRequired reports whether /v1/ requests need a token.
func (t tokens) apiRequired() bool { return len(t.api) > 0 }

// adminRequired reports whether admin endpoints need an admin token.
func (t tokens) adminRequired() bool { return len(t.api) > 0 || len(t.admin) > 0 }

// access is what a request's credentials allow.
type access int

const (
	noAccess   access = iota // no token, a malformed header or an unknown token
	apiToken                 // one of the API tokens
	adminToken               // one of the admin tokens
)

// check returns the access that r's bearer token grants.
func (t tokens) check(r *http.Request) access {
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return noAccess
	}
	sum := sha256.Sum256([]byte(tok))
	var isAPI, isAdmin int
	for i := range t.api {
		isAPI |= subtle.ConstantTimeCompare(sum[:], t.api[i][:])
	}
	for i := range t.admin {
		isAdmin |= subtle.ConstantTimeCompare(sum[:], t.admin[i][:])
	}
	switch {
	case isAdmin == 1:
		return adminToken
	case isAPI == 1:
		return apiToken
	}
	return noAccess
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header value;
// the scheme is case-insensitive (RFC 9110, section 11.1).
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.Trim(tok, " \t")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

func unauthorized(w http.ResponseWriter, r *http.Request) {
	challenge := `Bearer realm="tollgate"`
	if r.Header.Get("Authorization") != "" {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, CodeUnauthorized, "a valid bearer token is required")
}
