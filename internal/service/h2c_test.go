package service

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/internal/testutil"
)

// h2cClient speaks HTTP/2 without TLS, with prior knowledge, over one
// connection.
func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: testutil.Wait}
}

// The HTTP API speaks HTTP/2 without TLS beside HTTP/1.1: many checks at
// once over one connection, each counted once; with --http-h2c=false, an
// HTTP/2 client without TLS is refused and HTTP/1.1 still serves.
func TestServeH2C(t *testing.T) {
	cfg := testConfig()
	s := serve(t, cfg)
	client := h2cClient()
	defer client.CloseIdleConnections()
	const checks, limit = 200, 150
	var allowed, denied atomic.Int64
	var wg sync.WaitGroup
	for range checks {
		wg.Go(func() {
			resp, err := client.Post("http://"+s.http+"/v1/consume", "application/json",
				strings.NewReader(fmt.Sprintf(`{"key":"h2c","limit":%d,"window":"1h"}`, limit)))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Errorf("answered over %s, want HTTP/2", resp.Proto)
			}
			var r struct{ Allowed bool }
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Error(err)
			}
			switch {
			case resp.StatusCode == 200 && r.Allowed:
				allowed.Add(1)
			case resp.StatusCode == 429:
				denied.Add(1)
			default:
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != limit || denied.Load() != checks-limit {
		t.Errorf("allowed %d, denied %d; want %d and %d", allowed.Load(), denied.Load(), limit, checks-limit)
	}

	cfg = testConfig()
	cfg.HTTP.H2C = false
	s = serve(t, cfg)
	if resp, err := client.Get("http://" + s.http + "/healthz"); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Errorf("h2c with --http-h2c=false: %s %d, want a refused connection", resp.Proto, resp.StatusCode)
	}
	if r := post(t, s.http, "/v1/consume", `{"key":"h1","limit":1,"window":"1m"}`); r.status != 200 {
		t.Errorf("HTTP/1.1 with --http-h2c=false: %d", r.status)
	}
}
