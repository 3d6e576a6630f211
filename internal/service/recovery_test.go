package service

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/store/memory"
)

// panickingStore panics on every call for a key holding "boom" and passes
// the others to a memory store.
type panickingStore struct{ *memory.Store }

func (s panickingStore) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	if strings.Contains(req.Key, "boom") {
		panic("store exploded on purpose")
	}
	return s.Store.Do(ctx, req)
}

func newPanickingStore(t *testing.T) panickingStore {
	m := memory.New(memory.Options{})
	t.Cleanup(func() { _ = m.Close() })
	return panickingStore{m}
}

// get returns the status and body of GET path.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: testutil.Wait}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A panic under a request, on HTTP and on gRPC, answers 500 internal (with
// the JSON error body) or INTERNAL, is logged once with its stack, counts in
// tollgate_panics_total, and the process keeps serving.
func TestServeRecoversPanics(t *testing.T) {
	cfg := testConfig()
	cfg.Store = newPanickingStore(t)
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.GRPC.EnvoyConfig = testutil.WriteTemp(t, t.TempDir(), "envoy.yaml", testEnvoy)
	s := serve(t, cfg)

	r := post(t, s.http, "/v1/consume", `{"key":"boom","limit":10,"window":"1m"}`)
	if r.status != 500 || r.body != `{"error":{"code":"internal","message":"internal error"}}`+"\n" || r.header.Get("X-Request-Id") == "" {
		t.Errorf("HTTP panic: %d %q %v, want 500 internal with a request id", r.status, r.body, r.header)
	}
	conn := dialRLS(t, s.grpc)
	if got := overallCode(t, conn, "user=boom"); got != codes.Internal.String() {
		t.Errorf("gRPC panic: %s, want Internal", got)
	}
	// Still serving, on both.
	if r := post(t, s.http, "/v1/consume", `{"key":"fine","limit":10,"window":"1m"}`); r.status != 200 {
		t.Errorf("after the panics: %d %s", r.status, r.body)
	}
	if got := overallCode(t, conn, "user=fine"); got != "OK" {
		t.Errorf("gRPC after the panics: %s", got)
	}
	logs := s.logs.String()
	if n := strings.Count(logs, "store exploded on purpose"); n != 2 {
		t.Errorf("panic logged %d times, want once per panic (2):\n%s", n, logs)
	}
	if !strings.Contains(logs, "runtime/debug.Stack") && !strings.Contains(logs, "goroutine ") {
		t.Errorf("no stack in the log:\n%s", logs)
	}
	_, metrics := get(t, s.http, "/metrics")
	for _, want := range []string{`tollgate_panics_total{server="http"} 1`, `tollgate_panics_total{server="grpc"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

type panicCount struct{ n int }

func (p *panicCount) Panic(string) { p.n++ }

// The interceptors turn a panic of the handler itself into INTERNAL.
func TestRecoveryInterceptors(t *testing.T) {
	var logs testutil.SyncBuffer
	obs := &panicCount{}
	rc := recovery{log: NewLogger(&logs, slog.LevelInfo), obs: obs}
	info := &grpc.UnaryServerInfo{FullMethod: "/x/Y"}
	resp, err := rc.unary(context.Background(), nil, info, func(context.Context, any) (any, error) { panic("unary boom") })
	if resp != nil || status.Code(err) != codes.Internal {
		t.Errorf("unary: %v, %v", resp, err)
	}
	err = rc.stream(nil, fakeStream{}, &grpc.StreamServerInfo{FullMethod: "/x/Z"}, func(any, grpc.ServerStream) error { panic("stream boom") })
	if status.Code(err) != codes.Internal {
		t.Errorf("stream: %v", err)
	}
	if obs.n != 2 || !strings.Contains(logs.String(), "unary boom") || !strings.Contains(logs.String(), "stream boom") {
		t.Errorf("%d panics counted; logs:\n%s", obs.n, logs.String())
	}
}

type fakeStream struct{ grpc.ServerStream }

func (fakeStream) Context() context.Context { return context.Background() }
