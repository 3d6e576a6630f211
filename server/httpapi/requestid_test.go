package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/server/httpapi"
)

// A consume repeated with the same request_id (a client retrying after a
// lost answer) is answered as allowed and counts once.
func TestConsumeRequestID(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	consume := func(body string) (int, map[string]any) {
		rec := e.do(http.MethodPost, "/v1/consume", body)
		var got map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("body %q: %v", rec.Body, err)
		}
		return rec.Code, got
	}
	const first = `{"key":"k","cost":3,"limit":5,"window":"1m","request_id":"r-1"}`
	if code, got := consume(first); code != 200 || got["used"] != 3.0 {
		t.Fatalf("first: %d %v", code, got)
	}
	if code, got := consume(first); code != 200 || got["used"] != 3.0 {
		t.Fatalf("repeat: %d %v, want allowed with 3 used", code, got)
	}
	if code, got := consume(`{"key":"k","cost":3,"limit":5,"window":"1m","request_id":"r-2"}`); code != 429 || got["used"] != 3.0 {
		t.Fatalf("another request: %d %v, want denied", code, got)
	}

	// Too long an id is bad input; refund takes no id.
	long := `{"key":"k","limit":5,"window":"1m","request_id":"` + strings.Repeat("x", 129) + `"}`
	if code, got := consume(long); code != 400 || got["error"].(map[string]any)["code"] != string(httpapi.CodeInvalidRequestID) {
		t.Errorf("long id: %d %v", code, got)
	}
	rec := e.do(http.MethodPost, "/v1/refund", `{"key":"k","limit":5,"window":"1m","request_id":"r-1"}`)
	if rec.Code != 400 || decodeError(t, rec.Body.Bytes()).Error.Code != httpapi.CodeInvalidJSON {
		t.Errorf("refund with request_id: %d %s", rec.Code, rec.Body)
	}
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"":                       false,
		"a":                      true,
		"req-1~!":                true,
		"has space":              false,
		"tab\t":                  false,
		"é":                      false,
		strings.Repeat("x", 128): true,
		strings.Repeat("x", 129): false,
	} {
		if got := httpapi.ValidRequestID(id); got != want {
			t.Errorf("ValidRequestID(%.20q) = %v, want %v", id, got, want)
		}
	}
}
