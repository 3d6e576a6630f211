package httpapi_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/store/memory"
)

// A fail_local policy answers from the fallback limiter while the store is
// down, limits there too, and marks the answers degraded; other policies
// keep their own failure modes.
func TestFailLocal(t *testing.T) {
	pols, err := config.Parse([]byte(`
policies:
  - name: local
    units: 2
    window: 1m
    failure_mode: fail_local
  - name: closed
    units: 2
    window: 1m
`))
	if err != nil {
		t.Fatal(err)
	}
	down := tollgate.New(failingStore{errors.New("connection refused")}, tollgate.Options{})
	mem := memory.New(memory.Options{})
	defer mem.Close()
	h := httpapi.New(down, httpapi.Options{Policies: pols, Fallback: tollgate.New(mem, tollgate.Options{})})
	post := func(body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/consume", strings.NewReader(body)))
		return rec
	}
	for i, want := range []int{200, 200, 429} {
		rec := post(`{"key":"k","policy":"local"}`)
		if rec.Code != want || rec.Header().Get(httpapi.HeaderDegraded) != "local-fallback" {
			t.Errorf("consume %d: %d %q %s; want %d, degraded local-fallback", i, rec.Code, rec.Header().Get(httpapi.HeaderDegraded), rec.Body, want)
		}
	}
	if rec := post(`{"key":"k","policy":"closed"}`); rec.Code != 503 {
		t.Errorf("fail_closed policy: %d, want 503", rec.Code)
	}
	// Without a fallback, fail_local acts as fail_closed.
	h = httpapi.New(down, httpapi.Options{Policies: pols})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/consume", strings.NewReader(`{"key":"k","policy":"local"}`)))
	if rec.Code != 503 {
		t.Errorf("no fallback: %d, want 503", rec.Code)
	}
}
