package service

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/server/httpapi"
)

// A multi-tenant deployment through serve: scoped token lines and
// --inline-limits=false; a request outside its scope is 403 and changes
// nothing.
func TestServeScopedTokens(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Config = filepath.Join(dir, "tollgate.yaml")
	testutil.WriteAtomic(t, cfg.Config, "policies:\n  - {name: acme-api, units: 2, window: 1m}\n  - {name: globex-api, units: 2, window: 1m}\n")
	cfg.HTTP.APITokenFile = testutil.WriteTemp(t, dir, "api-tokens",
		"tok-acme policies=acme-* ops=check\ntok-globex policies=globex-* ops=check,refund\n")
	cfg.HTTP.AdminTokenFile = testutil.WriteTemp(t, dir, "admin-tokens", "tok-ops\n")
	cfg.HTTP.InlineLimits = false
	s := serve(t, cfg)
	auth := func(tok string) string { return "Authorization: Bearer " + tok }
	peek := func() string {
		body := post(t, s.http, "/v1/peek", `{"key":"k","policy":"acme-api"}`, auth("tok-ops")).body
		_, used, _ := strings.Cut(body, `"used":`)
		used, _, _ = strings.Cut(used, ",")
		return used
	}
	if r := post(t, s.http, "/v1/consume", `{"key":"k","policy":"acme-api"}`, auth("tok-acme")); r.status != 200 {
		t.Fatalf("acme on its policy: %d %s", r.status, r.body)
	}
	before := peek()
	for _, tc := range []struct{ path, body, tok string }{
		{"/v1/consume", `{"key":"k","policy":"globex-api"}`, "tok-acme"},
		{"/v1/refund", `{"key":"k","policy":"acme-api","cost":9223372036854775807}`, "tok-acme"},
		{"/v1/refund", `{"key":"k","policy":"acme-api","cost":9223372036854775807}`, "tok-globex"},
		{"/v1/consume", `{"key":"k","limit":1000000000000000,"window":"720h"}`, "tok-ops"},
		{"/v1/reset", `{"key":"k","policy":"acme-api"}`, "tok-acme"},
	} {
		r := post(t, s.http, tc.path, tc.body, auth(tc.tok))
		if r.status != 403 || !strings.Contains(r.body, `"code":"forbidden"`) {
			t.Errorf("%s %s with %s: %d %s, want 403 forbidden", tc.path, tc.body, tc.tok, r.status, r.body)
		}
	}
	if after := peek(); after != before {
		t.Errorf("forbidden requests changed usage: %s, was %s", after, before)
	}
}

// FuzzTokens: the token-file parser never panics, and what it accepts is
// well formed: non-empty tokens without blanks or control characters, each
// within the file's scope.
func FuzzTokens(f *testing.F) {
	for _, seed := range []string{
		"a\nb\n", "# c\r\n\r\n  a  \r\n", "a policies=x-*,y inline=false ops=check\n",
		"a ops=admin\n", "a policies=\n", "a b==\n", "a\x01b\n", "a ops=check ops=check\n", "",
	} {
		f.Add([]byte(seed))
	}
	base := httpapi.APIScope()
	f.Fuzz(func(t *testing.T, data []byte) {
		toks, err := parseTokens("tokens", data, base)
		if err != nil {
			if !errors.Is(err, ErrTokenFile) {
				t.Fatalf("error %v does not wrap ErrTokenFile", err)
			}
			return
		}
		if len(toks) == 0 {
			t.Fatal("no tokens and no error")
		}
		for _, tok := range toks {
			if tok.Secret == "" || strings.IndexFunc(tok.Secret, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
				t.Fatalf("token %q", tok.Secret)
			}
			if tok.Scope.Ops&^base.Ops != 0 || (tok.Scope.Inline && !base.Inline) {
				t.Fatalf("scope %+v beyond %+v", tok.Scope, base)
			}
			for _, p := range tok.Scope.Policies {
				if p == "" {
					t.Fatalf("an empty policy in %+v", tok.Scope)
				}
			}
		}
	})
}
