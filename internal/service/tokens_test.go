package service

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/server/httpapi"
)

func TestServeTokens(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.HTTP.APITokenFile = testutil.WriteTemp(t, dir, "api-tokens", "# API clients\nsecret-api-1\n\n  secret-api-2  \r\n")
	cfg.HTTP.AdminTokenFile = testutil.WriteTemp(t, dir, "admin-tokens", "secret-admin\n")
	if err := os.Chmod(cfg.HTTP.AdminTokenFile, 0o644); err != nil {
		t.Fatal(err)
	}
	s := serve(t, cfg)
	const consume = `{"key":"k","limit":10,"window":"1m"}`
	for _, tt := range []struct {
		path, body, auth string
		want             int
		wantCode         string
	}{
		{"/v1/consume", consume, "", 401, `"code":"unauthorized"`},
		{"/v1/consume", consume, "Bearer wrong", 401, `"code":"unauthorized"`},
		{"/v1/consume", consume, "Bearer secret-api-1", 200, ""},
		{"/v1/consume", consume, "Bearer secret-api-2", 200, ""},
		{"/v1/consume", consume, "Bearer secret-admin", 200, ""},
		{"/v1/reset", `{"key":"k"}`, "Bearer secret-api-1", 403, `"code":"forbidden"`},
		{"/v1/reset", `{"key":"k"}`, "", 401, `"code":"unauthorized"`},
		{"/v1/reset", `{"key":"k"}`, "Bearer secret-admin", 200, ""},
	} {
		var hdrs []string
		if tt.auth != "" {
			hdrs = append(hdrs, "Authorization: "+tt.auth)
		}
		resp := post(t, s.http, tt.path, tt.body, hdrs...)
		if resp.status != tt.want || !strings.Contains(resp.body, tt.wantCode) {
			t.Errorf("%s with %q: %d %s, want %d %s", tt.path, tt.auth, resp.status, resp.body, tt.want, tt.wantCode)
		}
	}
	client := &http.Client{Timeout: testutil.Wait}
	defer client.CloseIdleConnections()
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := client.Get("http://" + s.http + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s without a token: %d", path, resp.StatusCode)
		}
	}
	testutil.WaitLog(t, s.logs, `"msg":"token file is readable by others than its owner"`, "admin-tokens")
	if logs := s.logs.String(); strings.Contains(logs, "secret-") {
		t.Errorf("a token was logged:\n%s", logs)
	}
}

func TestReadTokens(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          []string
		wantErr       string
	}{
		{"one a line", "a\nb\n", []string{"a", "b"}, ""},
		{"comments, blanks and CRLF", "# c\r\n\r\n  a  \r\n\t# d\nb", []string{"a", "b"}, ""},
		{"a second word that is no scope", "good\nbad token\n", nil, ":2: invalid token scope: want KEY=VALUE"},
		{"scoped", "a policies=x-* inline=false ops=check\nb\n", []string{"a", "b"}, ""},
		{"scope beyond the file's", "a ops=admin\n", nil, ":1: invalid token scope: ops=admin beyond"},
		{"a second token with base64 padding", "a b64tok==\n", nil, "unknown key"},
		{"control character", "a\x01b\n", nil, ":1: a token must not contain blanks or control characters"},
		{"only comments", "# none\n", nil, "no tokens"},
		{"empty", "", nil, "no tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := testutil.WriteTemp(t, dir, "tokens", tt.content)
			toks, _, err := readTokens(path, httpapi.APIScope())
			var got []string
			for _, tok := range toks {
				got = append(got, tok.Secret)
			}
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err %v, want %q", err, tt.wantErr)
			case tt.wantErr == "" && (err != nil || strings.Join(got, ",") != strings.Join(tt.want, ",")):
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), "bad token") || strings.Contains(err.Error(), "b64tok")) {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
	big := testutil.WriteTemp(t, dir, "big", strings.Repeat("x", maxTokenFileSize+1))
	if _, _, err := readTokens(big, httpapi.APIScope()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
}
