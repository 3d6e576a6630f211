package httpapi_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/server/httpapi"
)

// A request outside its token's scope is 403 forbidden, with the error
// shape, and changes nothing: the usage it would have touched stays as it
// was.
func TestScopes(t *testing.T) {
	tenant, _ := httpapi.ParseScope([]string{"policies=tiny,hour*", "inline=false", "ops=check"}, httpapi.APIScope())
	refunder, _ := httpapi.ParseScope([]string{"policies=tiny", "ops=refund"}, httpapi.APIScope())
	opsAdmin, _ := httpapi.ParseScope([]string{"policies=tiny", "inline=false"}, httpapi.AdminScope())
	opts := httpapi.Options{
		Policies:          mustPolicies(t),
		APITokens:         []string{"full"},
		ScopedAPITokens:   []httpapi.Token{{Secret: "tenant", Scope: tenant}, {Secret: "refunder", Scope: refunder}},
		ScopedAdminTokens: []httpapi.Token{{Secret: "tiny-admin", Scope: opsAdmin}},
	}
	tests := []struct {
		name, token, path, body string
		want                    int
	}{
		{"tenant: own policy", "tenant", "/v1/consume", `{"key":"k","policy":"tiny"}`, 200},
		{"tenant: own prefix", "tenant", "/v1/peek", `{"key":"k","policy":"hourly"}`, 200},
		{"tenant: another policy", "tenant", "/v1/consume", `{"key":"k","policy":"huge"}`, 403},
		{"tenant: an unknown policy looks the same", "tenant", "/v1/consume", `{"key":"k","policy":"nope"}`, 403},
		{"tenant: inline limit", "tenant", "/v1/consume", `{"key":"k","limit":1000000000000000,"window":"720h"}`, 403},
		{"tenant: inline limits", "tenant", "/v1/peek", `{"key":"k","limits":[{"limit":1,"window":"1m"}]}`, 403},
		{"tenant: refund", "tenant", "/v1/refund", `{"key":"k","cost":9223372036854775807,"policy":"tiny"}`, 403},
		{"tenant: reset", "tenant", "/v1/reset", `{"key":"k","policy":"tiny"}`, 403},
		{"refunder: consume", "refunder", "/v1/consume", `{"key":"k","policy":"tiny"}`, 403},
		{"refunder: refund of another policy", "refunder", "/v1/refund", `{"key":"k","policy":"hourly"}`, 403},
		{"admin of tiny: reset of hourly", "tiny-admin", "/v1/reset", `{"key":"k","policy":"hourly"}`, 403},
		{"admin of tiny: reset of an inline key", "tiny-admin", "/v1/reset", `{"key":"k"}`, 403},
		{"full: inline limit", "full", "/v1/consume", `{"key":"k","limit":5,"window":"1m"}`, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, opts)
			// Usage before: tiny has 1 of 2 used, hourly 1 of 100, the
			// inline key 1 of 5.
			for _, b := range []string{`{"key":"k","policy":"tiny"}`, `{"key":"k","policy":"hourly"}`, `{"key":"k","limit":5,"window":"1m"}`, `{"key":"k","policy":"huge"}`} {
				if rec := e.doAuth("POST", "/v1/consume", b, "full"); rec.Code != 200 {
					t.Fatalf("setup %s: %d %s", b, rec.Code, rec.Body)
				}
			}
			before := e.usage(t)
			rec := e.doAuth("POST", tt.path, tt.body, tt.token)
			if rec.Code != tt.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tt.want)
			}
			if tt.want != 403 {
				return
			}
			if er := decodeError(t, rec.Body.Bytes()); er.Error.Code != httpapi.CodeForbidden {
				t.Errorf("code %s, want forbidden", er.Error.Code)
			}
			if strings.Contains(rec.Body.String(), `"nope"`) && strings.Contains(rec.Body.String(), "unknown") {
				t.Errorf("an out-of-scope token learns which policies exist: %s", rec.Body)
			}
			if after := e.usage(t); after != before {
				t.Errorf("usage changed by a forbidden request: %s, was %s", after, before)
			}
		})
	}
}

// PoliciesOnly refuses inline limits to everyone, tokens or not; an admin
// may still reset an inline key.
func TestPoliciesOnly(t *testing.T) {
	e := newEnv(t, httpapi.Options{Policies: mustPolicies(t), PoliciesOnly: true})
	for _, b := range []string{`{"key":"k","limit":10,"window":"1m"}`, `{"key":"k","limits":[{"limit":10,"window":"1m"}]}`} {
		rec := e.do("POST", "/v1/consume", b)
		if rec.Code != 403 || decodeError(t, rec.Body.Bytes()).Error.Code != httpapi.CodeForbidden {
			t.Errorf("inline %s: %d %s, want 403 forbidden", b, rec.Code, rec.Body)
		}
	}
	if rec := e.do("POST", "/v1/consume", `{"key":"k","policy":"tiny"}`); rec.Code != 200 {
		t.Errorf("policy: %d %s", rec.Code, rec.Body)
	}
	if rec := e.do("POST", "/v1/reset", `{"key":"k"}`); rec.Code != 200 {
		t.Errorf("reset of an inline key: %d %s", rec.Code, rec.Body)
	}
}

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		fields []string
		base   httpapi.Scope
		want   string // an error's text, or "" for none
	}{
		{nil, httpapi.APIScope(), ""},
		{[]string{"policies=*", "inline=false", "ops=check,refund"}, httpapi.APIScope(), ""},
		{[]string{"ops=admin"}, httpapi.APIScope(), "beyond this file's tokens"},
		{[]string{"ops=admin"}, httpapi.AdminScope(), ""},
		{[]string{"policies="}, httpapi.APIScope(), "an empty name"},
		{[]string{"inline=maybe"}, httpapi.APIScope(), "want true or false"},
		{[]string{"ops=write"}, httpapi.APIScope(), "unknown operation"},
		{[]string{"color=red"}, httpapi.APIScope(), "unknown key"},
		{[]string{"ops=check", "ops=check"}, httpapi.APIScope(), "given twice"},
		{[]string{"secret"}, httpapi.APIScope(), "want KEY=VALUE"},
	} {
		_, err := httpapi.ParseScope(tc.fields, tc.base)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.fields, err)
		case tc.want != "" && (!errors.Is(err, httpapi.ErrScope) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want ErrScope with %q", tc.fields, err, tc.want)
		}
	}
}

func (e *env) doAuth(method, path, body, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// usage is the used units of key k under tiny, hourly, huge and the inline
// 5/1m limit, read with peeks (which change nothing).
func (e *env) usage(t *testing.T) string {
	t.Helper()
	var parts []string
	for _, b := range []string{`{"key":"k","policy":"tiny"}`, `{"key":"k","policy":"hourly"}`, `{"key":"k","policy":"huge"}`, `{"key":"k","limit":5,"window":"1m"}`} {
		rec := e.doAuth("POST", "/v1/peek", b, "full")
		_, used, _ := strings.Cut(rec.Body.String(), `"used":`)
		used, _, _ = strings.Cut(used, ",")
		parts = append(parts, used)
	}
	return strings.Join(parts, "/")
}
