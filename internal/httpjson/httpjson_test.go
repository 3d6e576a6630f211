package httpjson_test

import (
	"net/http/httptest"
	"testing"

	"github.com/tollgate/tollgate/internal/httpjson"
)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	httpjson.Write(rec, 201, map[string]string{"status": "ok"})
	want := "{\"status\":\"ok\"}\n"
	if rec.Code != 201 || rec.Body.String() != want {
		t.Errorf("got %d %q, want 201 %q", rec.Code, rec.Body, want)
	}
	for k, v := range map[string]string{
		"Content-Type": "application/json", "Content-Length": "16",
		"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
	} {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}

	rec = httptest.NewRecorder()
	httpjson.Write(rec, 200, func() {}) // cannot be encoded
	if rec.Code != 500 || rec.Body.String() != "{\"error\":{\"code\":\"internal\",\"message\":\"encoding the response failed\"}}\n" {
		t.Errorf("unencodable: %d %q", rec.Code, rec.Body)
	}
}

func TestWriteError(t *testing.T) {
	for _, c := range []struct {
		retry int64
		want  string
	}{
		{0, `{"error":{"code":"c","message":"m"}}` + "\n"},
		{1500, `{"error":{"code":"c","message":"m","retry_after_ms":1500}}` + "\n"},
	} {
		rec := httptest.NewRecorder()
		httpjson.WriteError(rec, 429, "c", "m", c.retry)
		if rec.Code != 429 || rec.Body.String() != c.want {
			t.Errorf("retry %d: %d %q, want %q", c.retry, rec.Code, rec.Body, c.want)
		}
	}
}
