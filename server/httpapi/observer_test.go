package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/server/observe/observetest"
)

func TestObserver(t *testing.T) {
	obs := &observetest.Checks{}
	e := newEnv(t, httpapi.Options{Policies: mustPolicies(t), Observer: obs})
	for i, s := range []struct {
		path, body string
		status     int
		want       string // reported checks
	}{
		{"/v1/consume", `{"key":"k","policy":"tiny","cost":2}`, 200, "tiny allowed"},
		{"/v1/consume", `{"key":"k","policy":"tiny"}`, 429, "tiny denied"},
		{"/v1/consume", `{"key":"k","limit":1,"window":"1m"}`, 200, "inline allowed"},
		{"/v1/consume", `{"key":"k","limit":1,"window":"1m"}`, 429, "inline denied"},
		{"/v1/consume", `{"key":"k","policy":"shadow"}`, 200, "shadow allowed"},
		{"/v1/consume", `{"key":"k","policy":"shadow"}`, 200, "shadow shadow_denied"},
		{"/v1/consume", `{"key":"k","policy":"shadow","cost":5}`, 200, "shadow shadow_denied"},
		// Peeks, refunds, resets and bad requests are not checks.
		{"/v1/peek", `{"key":"k","policy":"tiny"}`, 429, ""},
		{"/v1/refund", `{"key":"k","policy":"tiny"}`, 200, ""},
		{"/v1/reset", `{"key":"k","policy":"tiny"}`, 200, ""},
		{"/v1/consume", `{"key":"k","policy":"nope"}`, 400, ""},
		{"/v1/consume", `{"key":"k","policy":"tiny","cost":3}`, 400, ""},
		{"/v1/consume", `{"key":"","limit":1,"window":"1m"}`, 400, ""},
		{"/v1/consume", `{"key":"k","limit":1,"window":"1m","cost":0}`, 400, ""},
	} {
		rec := e.do("POST", s.path, s.body)
		if rec.Code != s.status {
			t.Fatalf("step %d: %s %s: %d %s, want %d", i, s.path, s.body, rec.Code, rec.Body, s.status)
		}
		if got := obs.Take(); got != s.want {
			t.Errorf("step %d: %s %s reported %q, want %q", i, s.path, s.body, got, s.want)
		}
	}
}

func TestObserverStoreFailures(t *testing.T) {
	obs := &observetest.Checks{}
	calls := 0
	h := httpapi.New(tollgate.New(unavailableStore{&calls}, tollgate.Options{}),
		httpapi.Options{Policies: mustPolicies(t), Observer: obs})
	for _, s := range []struct{ body, want string }{
		{`{"key":"k","policy":"open"}`, "open fail_open"},
		{`{"key":"k","policy":"closed"}`, "closed error"},
		{`{"key":"k","limit":1,"window":"1m"}`, "inline error"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/consume", strings.NewReader(s.body)))
		if got := obs.Take(); got != s.want {
			t.Errorf("%s reported %q, want %q", s.body, got, s.want)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("tollgate_checks_total 0\n"))
	})
	// Served without a token, like /healthz; GET and HEAD only.
	e := newEnv(t, httpapi.Options{Metrics: metrics, APITokens: []string{"secret"}})
	rec := e.do("GET", "/metrics", "")
	if rec.Code != 200 || rec.Body.String() != "tollgate_checks_total 0\n" {
		t.Errorf("GET /metrics: %d %q", rec.Code, rec.Body)
	}
	if rec.Header().Get(httpapi.HeaderRequestID) == "" {
		t.Error("no request id")
	}
	if rec := e.do("POST", "/metrics", "{}"); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /metrics: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	// Without a Metrics handler there is no such path.
	e = newEnv(t, httpapi.Options{})
	if rec := e.do("GET", "/metrics", ""); rec.Code != 404 {
		t.Errorf("GET /metrics without Metrics: %d", rec.Code)
	}
}
