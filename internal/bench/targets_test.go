package bench_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/server/rls"
	"github.com/tollgate/tollgate/store/memory"
)

func newLimiter(t *testing.T) *tollgate.Limiter {
	t.Helper()
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	return tollgate.New(st, tollgate.Options{})
}

// The HTTP target against the real HTTP API: exactly the limit is allowed,
// and answers that are not a decision are errors of their kind.
func TestHTTPTarget(t *testing.T) {
	srv := httptest.NewServer(httpapi.New(newLimiter(t), httpapi.Options{APITokens: []string{"tok"}}))
	defer srv.Close()
	limit := tollgate.Limit{Units: 40, Window: time.Hour, Algorithm: tollgate.GCRA}

	h, err := bench.NewHTTP(srv.URL+"/", limit, bench.HTTPOptions{Token: "tok", Conns: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	row, err := bench.Run(t.Context(), "http", h, bench.Config{Keys: 2, Count: 200, Concurrency: 8, Cost: bench.FixedCost(2)})
	if err != nil {
		t.Fatal(err)
	}
	if row.Allowed != 40 || row.Denied != 160 || row.Errors != 0 {
		t.Errorf("allowed %d, denied %d, errors %d %v; want 40 (2 keys × 40 units / cost 2), 160, 0", row.Allowed, row.Denied, row.Errors, row.ErrorSamples)
	}

	noToken, err := bench.NewHTTP(srv.URL, limit, bench.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer noToken.Close()
	row, err = bench.Run(t.Context(), "http", noToken, bench.Config{Count: 10, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if row.ErrorKinds["http_401_unauthorized"] != 10 {
		t.Errorf("without a token: %v, want 10 http_401_unauthorized", row.ErrorKinds)
	}

	if _, err := bench.NewHTTP("127.0.0.1:8080", limit, bench.HTTPOptions{}); err == nil {
		t.Error("NewHTTP without a scheme: no error")
	}
}

// Redirects are not followed: they could lead off loopback.
func TestHTTPTargetNoRedirect(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("http://192.0.2.1/v1/consume", http.StatusPermanentRedirect))
	defer srv.Close()
	h, err := bench.NewHTTP(srv.URL, tollgate.PerHour(10), bench.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Check(t.Context(), "k", 1)
	if bench.Kind(err) != "http_308" {
		t.Errorf("redirect: %v (kind %q), want kind http_308", err, bench.Kind(err))
	}
}

// The gRPC target against the real Envoy rate limit service, with the rule
// EnvoyConfig writes: exactly the limit is allowed; a domain without rules
// is reported, not measured.
func TestGRPCTarget(t *testing.T) {
	limit := tollgate.Limit{Units: 30, Window: time.Hour, Algorithm: tollgate.SlidingWindow}
	rules, err := config.ParseEnvoy([]byte(bench.EnvoyConfig("", "", limit)))
	if err != nil {
		t.Fatalf("EnvoyConfig does not parse: %v\n%s", err, bench.EnvoyConfig("", "", limit))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	rls.New(newLimiter(t), rules, rls.Options{}).Register(gs)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()

	g, err := bench.NewGRPC(ln.Addr().String(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	row, err := bench.Run(t.Context(), "grpc", g, bench.Config{Keys: 3, Count: 300, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	if row.Allowed != 90 || row.Denied != 210 || row.Errors != 0 {
		t.Errorf("allowed %d, denied %d, errors %d %v; want 90 (3 keys × 30), 210, 0", row.Allowed, row.Denied, row.Errors, row.ErrorSamples)
	}

	other, err := bench.NewGRPC(ln.Addr().String(), "elsewhere", "")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Check(t.Context(), "k", 1); bench.Kind(err) != "no_rule" {
		t.Errorf("unmatched domain: %v (kind %q), want kind no_rule", err, bench.Kind(err))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := g.Check(ctx, "k", 1); bench.Kind(err) != "canceled" {
		t.Errorf("cancelled: %v (kind %q)", err, bench.Kind(err))
	}
}

func TestParseBenchmarkCSV(t *testing.T) {
	out := `Cluster has 3 master nodes:

Master 0: 6d1f 127.0.0.11:7000
Master 1: 8a2e 127.0.0.12:7000
"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"EVALSHA 1c2b 2 k:{tag}:__rand_int__:1","51564.25","1.100","0.100","1.031","1.900","2.343","9.100"
`
	rps, p50, p99, err := bench.ParseBenchmarkCSV([]byte(out))
	if err != nil || rps != 51564.25 || p50 != 1.031 || p99 != 2.343 {
		t.Errorf("got %v, %v, %v, %v", rps, p50, p99, err)
	}
	if _, _, _, err := bench.ParseBenchmarkCSV([]byte("ERR unknown command\n")); err == nil {
		t.Error("garbage: no error")
	}
	if _, _, _, err := bench.ParseBenchmarkCSV([]byte(strings.Replace(out, `"rps"`, `"x"`, 1))); err == nil {
		t.Error("no rps column: no error")
	}
}

// The HTTP target resets its keys by POST /v1/reset after a run; a token
// that may not reset leaves them, and the row says so.
func TestHTTPTargetReset(t *testing.T) {
	lim := newLimiter(t)
	srv := httptest.NewServer(httpapi.New(lim, httpapi.Options{APITokens: []string{"api"}, AdminTokens: []string{"admin"}}))
	defer srv.Close()
	limit := tollgate.Limit{Units: 5, Window: time.Hour}
	for _, tc := range []struct {
		token     string
		wantReset bool
	}{{"admin", true}, {"api", false}} {
		h, err := bench.NewHTTP(srv.URL, limit, bench.HTTPOptions{Token: tc.token, Conns: 2})
		if err != nil {
			t.Fatal(err)
		}
		row, err := bench.Run(t.Context(), "http", h, bench.Config{Keys: 1, KeyPrefix: "r-" + tc.token + "-", Count: 10, Concurrency: 2})
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		if row.Allowed != 5 || row.Errors != 0 {
			t.Errorf("token %s: allowed %d, errors %d", tc.token, row.Allowed, row.Errors)
		}
		res, err := lim.Namespace(httpapi.NamespaceInline).Peek(t.Context(), "r-"+tc.token+"-0", limit)
		if err != nil {
			t.Fatal(err)
		}
		if reset := res.Used == 0; reset != tc.wantReset || (row.Note == "") != tc.wantReset {
			t.Errorf("token %s: used %d after the run, note %q; want reset %t", tc.token, res.Used, row.Note, tc.wantReset)
		}
	}
}
