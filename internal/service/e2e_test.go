package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlspb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/settings"
	"github.com/tollgate/tollgate/store/memory"
)

const testEnvoy = `
domain: test
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: open
    rate_limit: {unit: minute, requests_per_unit: 2, failure_mode: fail_open}
  - key: closed
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: local
    rate_limit: {unit: minute, requests_per_unit: 1, failure_mode: fail_local}
`

const testPolicyFile = `
policies:
  - name: p
    units: 1
    window: 1h
  - name: open
    units: 10
    window: 1m
    failure_mode: fail_open
  - name: closed
    units: 10
    window: 1m
`

// server is a runServe running in the background.
type server struct {
	http, grpc string // bound addresses; grpc "" when not served
	logs       *testutil.SyncBuffer
	cancel     context.CancelFunc
	done       <-chan error
}

// serve runs runServe with cfg (Listen and GRPCListen, when set, should use
// port 0) and stops it at cleanup, failing the test if it does not return
// nil.
func serve(t *testing.T, cfg Config) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{logs: &testutil.SyncBuffer{}, cancel: cancel}
	logger := slog.New(contextHandler{slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})})
	type addrs struct{ http, grpc net.Addr }
	bound := make(chan addrs, 1)
	cfg.OnListening = func(h, g net.Addr) { bound <- addrs{h, g} }
	done := make(chan error, 1)
	s.done = done
	go func() { done <- Run(ctx, cfg, logger) }()
	select {
	case a := <-bound:
		s.http = a.http.String()
		if a.grpc != nil {
			s.grpc = a.grpc.String()
		}
	case err := <-done:
		cancel()
		t.Fatalf("runServe returned before listening: %v", err)
	case <-time.After(testutil.Wait):
		cancel()
		t.Fatal("runServe did not start listening")
	}
	t.Cleanup(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("runServe: %v", err)
			}
		case <-time.After(2 * testutil.Wait):
			t.Error("runServe did not return after cancel")
		}
	})
	return s
}

// stop cancels the server and returns runServe's result.
func (s *server) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done = closedWith(nil) // for the cleanup
		return err
	case <-time.After(2 * testutil.Wait):
		t.Fatal("runServe did not return after cancel")
		return nil
	}
}

func closedWith(err error) <-chan error {
	ch := make(chan error, 1)
	ch <- err
	return ch
}

type response struct {
	status int
	header http.Header
	body   string
}

// post sends a JSON body with header lines "Name: value".
func post(t *testing.T, addr, path, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: testutil.Wait}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// dialRLS connects a gRPC client, closed at cleanup.
func dialRLS(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rateLimit sends one descriptor "key=value" to domain test.
func rateLimit(ctx context.Context, conn *grpc.ClientConn, kv string, opts ...grpc.CallOption) (*rlspb.RateLimitResponse, error) {
	k, v, _ := strings.Cut(kv, "=")
	return rlspb.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlspb.RateLimitRequest{
		Domain:      "test",
		Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: k, Value: v}}}},
	}, opts...)
}

func overallCode(t *testing.T, conn *grpc.ClientConn, kv string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Wait)
	defer cancel()
	resp, err := rateLimit(ctx, conn, kv)
	if err != nil {
		return status.Code(err).String()
	}
	return resp.GetOverallCode().String()
}

// infoAndAbove returns the log lines that are not at Debug.
func infoAndAbove(logs string) string {
	var b strings.Builder
	for line := range strings.Lines(logs) {
		if !strings.Contains(line, `"level":"DEBUG"`) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// gateStore is a memory store whose calls testutil.Wait until the gate opens (or
// their context ends), reporting each call as it enters.
type gateStore struct {
	*memory.Store
	entered chan struct{}
	gate    chan struct{}
}

func newGateStore(t *testing.T) *gateStore {
	m := memory.New(memory.Options{})
	t.Cleanup(func() { _ = m.Close() })
	return &gateStore{Store: m, entered: make(chan struct{}, 16), gate: make(chan struct{})}
}

func (s *gateStore) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	s.entered <- struct{}{}
	select {
	case <-s.gate:
	case <-ctx.Done():
		return tollgate.Decision{}, ctx.Err()
	}
	return s.Store.Do(ctx, req)
}

// waitRefused waits until nothing accepts connections at addr.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(testutil.Wait)
	for {
		c, err := net.DialTimeout("tcp", addr, testutil.Wait)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeGracefulShutdownWithInFlightChecks(t *testing.T) {
	store := newGateStore(t)
	cfg := testConfig()
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.GRPC.EnvoyConfig = testutil.WriteTemp(t, t.TempDir(), "envoy.yaml", testEnvoy)
	cfg.Check.Timeout = 2 * testutil.Wait // the gate, not the check timeout, ends the calls
	cfg.Store = store
	s := serve(t, cfg)
	conn := dialRLS(t, s.grpc)

	// One gRPC and one HTTP check testutil.Wait in the store.
	type result struct {
		code string
		err  error
	}
	grpcRes := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*testutil.Wait)
		defer cancel()
		resp, err := rateLimit(ctx, conn, "user=alice")
		grpcRes <- result{resp.GetOverallCode().String(), err}
	}()
	httpRes := make(chan response, 1)
	go func() {
		// post cannot call t.Fatal here; errors show as status 0.
		req, _ := http.NewRequest("POST", "http://"+s.http+"/v1/consume", strings.NewReader(`{"key":"k","limit":1,"window":"1m"}`))
		client := &http.Client{Timeout: 2 * testutil.Wait}
		defer client.CloseIdleConnections()
		resp, err := client.Do(req)
		if err != nil {
			httpRes <- response{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		httpRes <- response{status: resp.StatusCode, body: string(b)}
	}()
	for range 2 {
		select {
		case <-store.entered:
		case <-time.After(testutil.Wait):
			t.Fatal("checks did not reach the store")
		}
	}

	s.cancel()
	// Both servers stop accepting while the checks are in flight ...
	waitRefused(t, s.grpc)
	waitRefused(t, s.http)
	select {
	case err := <-s.done:
		t.Fatalf("runServe returned with checks in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	// ... and the checks complete once the store answers.
	close(store.gate)
	select {
	case r := <-grpcRes:
		if r.err != nil || r.code != "OK" {
			t.Errorf("in-flight gRPC check: %s, %v; want OK", r.code, r.err)
		}
	case <-time.After(testutil.Wait):
		t.Fatal("in-flight gRPC check did not complete")
	}
	select {
	case r := <-httpRes:
		if r.status != 200 || !strings.Contains(r.body, `"allowed":true`) {
			t.Errorf("in-flight HTTP check: %d %s", r.status, r.body)
		}
	case <-time.After(testutil.Wait):
		t.Fatal("in-flight HTTP check did not complete")
	}
	if err := s.stop(t); err != nil {
		t.Errorf("runServe: %v", err)
	}
	testutil.WaitLog(t, s.logs, `"msg":"stopped"`)
}

func TestServeShutdownTimeoutWithStuckGRPC(t *testing.T) {
	store := newGateStore(t) // never opened
	cfg := testConfig()
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.GRPC.EnvoyConfig = testutil.WriteTemp(t, t.TempDir(), "envoy.yaml", testEnvoy)
	cfg.Check.Timeout = 4 * testutil.Wait
	cfg.Check.ShutdownTimeout = 200 * time.Millisecond
	cfg.Store = store
	s := serve(t, cfg)
	conn := dialRLS(t, s.grpc)
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*testutil.Wait)
		defer cancel()
		_, err := rateLimit(ctx, conn, "user=alice")
		res <- err
	}()
	select {
	case <-store.entered:
	case <-time.After(testutil.Wait):
		t.Fatal("check did not reach the store")
	}
	start := time.Now()
	err := s.stop(t)
	if err == nil || !strings.Contains(err.Error(), "shutdown grpc") {
		t.Errorf("runServe: %v, want a gRPC shutdown timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("gave up after %s, want about 200ms", d)
	}
	select {
	case err := <-res:
		if err == nil {
			t.Error("the dropped call succeeded")
		}
	case <-time.After(testutil.Wait):
		t.Fatal("the dropped call did not end")
	}
}

// failingStore fails every call as unavailable.
type failingStore struct{}

func (failingStore) Do(context.Context, tollgate.Request) (tollgate.Decision, error) {
	return tollgate.Decision{}, fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)
}

func (failingStore) Reset(context.Context, string) error {
	return fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)
}

// hangingStore answers nothing until its context ends.
type hangingStore struct{}

func (hangingStore) Do(ctx context.Context, _ tollgate.Request) (tollgate.Decision, error) {
	<-ctx.Done()
	return tollgate.Decision{}, ctx.Err()
}

func (hangingStore) Reset(ctx context.Context, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestServeFailureModes(t *testing.T) {
	dir := t.TempDir()
	for _, st := range []struct {
		name  string
		store tollgate.Store
	}{
		{"failing store", failingStore{}},
		{"store hanging past the check timeout", hangingStore{}},
	} {
		t.Run(st.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Config = testutil.WriteTemp(t, dir, "tollgate.yaml", testPolicyFile)
			cfg.GRPC.Listen = "127.0.0.1:0"
			cfg.GRPC.EnvoyConfig = testutil.WriteTemp(t, dir, "envoy.yaml", testEnvoy)
			cfg.Check.Timeout = 50 * time.Millisecond
			cfg.Store = st.store
			s := serve(t, cfg)

			for _, tt := range []struct {
				body         string
				wantStatus   int
				wantDegraded string
			}{
				{`{"key":"k","policy":"open"}`, 200, "store-unavailable"},
				{`{"key":"k","policy":"closed"}`, 503, ""},
				{`{"key":"k","limit":10,"window":"1m"}`, 503, ""},
			} {
				start := time.Now()
				resp := post(t, s.http, "/v1/consume", tt.body)
				if resp.status != tt.wantStatus || resp.header.Get("Tollgate-Degraded") != tt.wantDegraded {
					t.Errorf("%s: %d, Tollgate-Degraded %q; want %d, %q; body %s",
						tt.body, resp.status, resp.header.Get("Tollgate-Degraded"), tt.wantStatus, tt.wantDegraded, resp.body)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("%s took %s with a 50ms check timeout", tt.body, d)
				}
			}

			conn := dialRLS(t, s.grpc)
			if got := overallCode(t, conn, "open=x"); got != "OK" {
				t.Errorf("gRPC fail_open rule: %s, want OK", got)
			}
			if got := overallCode(t, conn, "closed=x"); got != codes.Unavailable.String() {
				t.Errorf("gRPC fail_closed rule: %s, want Unavailable", got)
			}
			// fail_local: this instance's own memory limits it, 1 a minute.
			for i, want := range []string{"OK", "OVER_LIMIT"} {
				if got := overallCode(t, conn, "local=x"); got != want {
					t.Errorf("gRPC fail_local rule, call %d: %s, want %s", i, got, want)
				}
			}
			testutil.WaitLog(t, s.logs, `"level":"WARN"`, `"msg":"store unavailable"`)
		})
	}
}

// TestServeGRPC runs the service as `tollgate serve --grpc-listen
// 127.0.0.1:0` would and talks to it with a real gRPC client.
func TestServeGRPC(t *testing.T) {
	envoy := testutil.WriteTemp(t, t.TempDir(), "envoy.yaml", testEnvoy)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut testutil.SyncBuffer
	// The settings of: serve --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0
	// --envoy-config envoy --grpc-reflection --log-level debug (cmd/tollgate
	// tests the flags).
	cfg := Config{Settings: settings.Default()}
	cfg.HTTP.Listen, cfg.GRPC.Listen, cfg.GRPC.EnvoyConfig = "127.0.0.1:0", "127.0.0.1:0", envoy
	cfg.GRPC.Reflection = true
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, NewLogger(&errOut, slog.LevelDebug)) }()

	var listening struct {
		Addr     string
		GRPCAddr string `json:"grpc_addr"`
	}
	line := testutil.WaitLog(t, &errOut, `"msg":"listening"`)
	if err := json.Unmarshal([]byte(line), &listening); err != nil || listening.GRPCAddr == "" {
		t.Fatalf("listening record %s: %v", line, err)
	}
	conn := dialRLS(t, listening.GRPCAddr)
	callCtx, callCancel := context.WithTimeout(ctx, testutil.Wait)
	defer callCancel()

	// Rate limiting, with the request id sent back and logged.
	for i, want := range []string{"OK", "OK", "OVER_LIMIT"} {
		var hdr metadata.MD
		id := fmt.Sprintf("rls-%d", i)
		resp, err := rateLimit(metadata.AppendToOutgoingContext(callCtx, "x-request-id", id), conn, "user=alice", grpc.Header(&hdr))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := resp.GetOverallCode().String(); got != want {
			t.Errorf("call %d: %s, want %s", i, got, want)
		}
		if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != id {
			t.Errorf("call %d: x-request-id %q, want %q", i, got, id)
		}
		testutil.WaitLog(t, &errOut, `"msg":"descriptor"`, `"request_id":"`+id+`"`)
	}
	var hdr metadata.MD
	if _, err := rateLimit(callCtx, conn, "user=bob", grpc.Header(&hdr)); err != nil || len(hdr.Get("x-request-id")) != 1 || hdr.Get("x-request-id")[0] == "" {
		t.Errorf("without an id: x-request-id %q, err %v; want a new one", hdr.Get("x-request-id"), err)
	}

	// Health and reflection.
	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "envoy.service.ratelimit.v3.RateLimitService"} {
		resp, err := hc.Check(callCtx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v, %v", svc, resp, err)
		}
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(callCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	refl, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range refl.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	if !strings.Contains(strings.Join(services, " "), "envoy.service.ratelimit.v3.RateLimitService") {
		t.Errorf("reflection lists %q", services)
	}
	_ = stream.CloseSend()

	// The HTTP API is served alongside, echoing request ids.
	resp := post(t, listening.Addr, "/v1/consume", `{"key":"k","limit":1,"window":"1m"}`, "X-Request-Id: http-1")
	if resp.status != 200 || resp.header.Get("X-Request-Id") != "http-1" {
		t.Errorf("HTTP: %d, X-Request-Id %q", resp.status, resp.header.Get("X-Request-Id"))
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(2 * testutil.Wait):
		t.Fatal("serve did not return after cancel")
	}
	if strings.Contains(infoAndAbove(errOut.String()), "alice") {
		t.Errorf("descriptor value logged at info or above:\n%s", errOut.String())
	}
}
