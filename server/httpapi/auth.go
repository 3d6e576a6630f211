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

// tokens holds the SHA-256 of the configured bearer tokens, each with its
// scope. Comparing digests of fixed length in constant time, against every
// token, reveals neither a token's length nor which one matched.
type tokens struct {
	sums   [][sha256.Size]byte
	scopes []Scope
	// api: some token came from an API list, so /v1/ requests need one.
	api bool
}

// newTokens hashes the tokens; admin tokens come last, so that a token in
// both lists gets its admin scope.
func newTokens(api, admin []string, scopedAPI, scopedAdmin []Token) tokens {
	var t tokens
	add := func(secret string, s Scope, isAPI bool) {
		if secret != "" {
			t.sums = append(t.sums, sha256.Sum256([]byte(secret)))
			t.scopes = append(t.scopes, s)
			t.api = t.api || isAPI
		}
	}
	for _, s := range api {
		add(s, APIScope(), true)
	}
	for _, tok := range scopedAPI {
		add(tok.Secret, tok.Scope, true)
	}
	for _, s := range admin {
		add(s, AdminScope(), false)
	}
	for _, tok := range scopedAdmin {
		add(tok.Secret, tok.Scope, false)
	}
	return t
}

// apiRequired reports whether /v1/ requests need a token.
func (t tokens) apiRequired() bool { return t.api }

// adminRequired reports whether admin endpoints need an admin token.
func (t tokens) adminRequired() bool { return len(t.sums) > 0 }

// check returns the scope of r's bearer token and whether it is one of the
// tokens.
func (t tokens) check(r *http.Request) (Scope, bool) {
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return Scope{}, false
	}
	sum := sha256.Sum256([]byte(tok))
	found, idx := 0, 0
	for i := range t.sums {
		eq := subtle.ConstantTimeCompare(sum[:], t.sums[i][:])
		found |= eq
		idx = subtle.ConstantTimeSelect(eq, i, idx)
	}
	if found == 0 {
		return Scope{}, false
	}
	return t.scopes[idx], true
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
