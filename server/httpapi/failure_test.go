package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/httpapi"
)

// Readiness, store failures and logging.

func TestReadyz(t *testing.T) {
	notReady := errors.New("dial tcp 10.0.0.7:6379: slot 1234 unreachable")
	tests := []struct {
		name       string
		ready      func(context.Context) error
		wantStatus int
		wantCode   httpapi.Code
	}{
		{"nil is always ready", nil, 200, ""},
		{"ready", func(context.Context) error { return nil }, 200, ""},
		{"not ready", func(context.Context) error { return notReady }, 503, httpapi.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, httpapi.Options{Ready: tt.ready})
			rec := e.do("GET", "/readyz", "")
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			checkJSONHeaders(t, rec)
			if tt.wantCode == "" {
				if got := rec.Body.String(); got != "{\"status\":\"ok\"}\n" {
					t.Errorf("body %q", got)
				}
				return
			}
			// No internals (addresses, slots) for an unauthenticated caller.
			if got := decodeError(t, rec.Body.Bytes()); got.Error.Code != tt.wantCode || got.Error.Message != "store unavailable" {
				t.Errorf("error %+v, want code %q and the message %q", got.Error, tt.wantCode, "store unavailable")
			}
			// /healthz is liveness only.
			if rec := e.do("GET", "/healthz", ""); rec.Code != 200 {
				t.Errorf("healthz while not ready: %d", rec.Code)
			}
		})
	}
}

// failingStore is a tollgate.Store whose every call fails.
type failingStore struct{ err error }

func (s failingStore) Do(context.Context, tollgate.Request) (tollgate.Decision, error) {
	return tollgate.Decision{}, s.err
}

func (s failingStore) Reset(context.Context, string) error { return s.err }

func TestStoreFailure(t *testing.T) {
	const secretKey = "cust-secret-42"
	stores := []struct {
		name string
		err  error
	}{
		{"wrapped", fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)},
		{"bare", errors.New("connection refused")},
	}
	requests := []struct{ path, body string }{
		{"/v1/consume", `{"key":"` + secretKey + `","limit":10,"window":"1m"}`},
		{"/v1/peek", `{"key":"` + secretKey + `","limit":10,"window":"1m"}`},
		{"/v1/refund", `{"key":"` + secretKey + `","limit":10,"window":"1m"}`},
		{"/v1/reset", `{"key":"` + secretKey + `"}`},
	}
	for _, st := range stores {
		for _, r := range requests {
			t.Run(st.name+r.path, func(t *testing.T) {
				var logs bytes.Buffer
				logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
				lim := tollgate.New(failingStore{st.err}, tollgate.Options{})
				h := httpapi.New(lim, httpapi.Options{Logger: logger})
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("POST", r.path, strings.NewReader(r.body)))
				if rec.Code != http.StatusServiceUnavailable {
					t.Fatalf("status %d, want 503; body %s", rec.Code, rec.Body)
				}
				checkJSONHeaders(t, rec)
				e := decodeError(t, rec.Body.Bytes())
				if e.Error.Code != httpapi.CodeUnavailable {
					t.Errorf("code %q, want %q", e.Error.Code, httpapi.CodeUnavailable)
				}
				if strings.Contains(e.Error.Message, "refused") {
					t.Errorf("message leaks the store error: %q", e.Error.Message)
				}
				var rec0 struct{ Level, Error string }
				if err := json.Unmarshal(logs.Bytes(), &rec0); err != nil {
					t.Fatalf("want one JSON log record, got %q: %v", logs.String(), err)
				}
				if rec0.Level != "WARN" || !strings.Contains(rec0.Error, "connection refused") {
					t.Errorf("log %s: want a WARN record with the error", logs.String())
				}
				if strings.Contains(logs.String(), secretKey) {
					t.Errorf("log contains the key: %s", logs.String())
				}
			})
		}
	}
	t.Run("bad input is rejected before the store", func(t *testing.T) {
		lim := tollgate.New(failingStore{errors.New("must not be called")}, tollgate.Options{})
		h := httpapi.New(lim, httpapi.Options{})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/consume", strings.NewReader(`{"key":"k","cost":0,"limit":1,"window":"1m"}`)))
		if rec.Code != 400 {
			t.Errorf("status %d, want 400", rec.Code)
		}
	})
}

func TestNoInfoLogsPerRequest(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, httpapi.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	for _, r := range []struct{ path, body string }{
		{"/v1/consume", `{"key":"k","limit":1,"window":"1m"}`},
		{"/v1/consume", `{"key":"k","limit":1,"window":"1m"}`}, // denied
		{"/v1/peek", `{"key":"k","limit":1,"window":"1m"}`},
		{"/v1/refund", `{"key":"k","limit":1,"window":"1m"}`},
		{"/v1/reset", `{"key":"k"}`},
		{"/v1/consume", `{"key":"k","limit":0,"window":"1m"}`}, // bad input
		{"/healthz", ``},
	} {
		e.do("POST", r.path, r.body)
	}
	if logs.Len() != 0 {
		t.Errorf("logged at info or above: %s", logs.String())
	}
}

func TestDebugLogs(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, httpapi.Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	e.do("POST", "/v1/consume", `{"key":"k","limit":1,"window":"1m"}`)
	if !strings.Contains(logs.String(), `"level":"DEBUG"`) || !strings.Contains(logs.String(), `"allowed":true`) {
		t.Errorf("want one debug record per request, got %s", logs.String())
	}
}
