package service

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/settings"
)

func TestMain(m *testing.M) {
	// rueidis v1.0.79 leaves a delayed cluster refresh sleeping (about half
	// a second) after Close of a cluster client that never connected (the
	// "cluster unreachable" cases); it ends by itself.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"))
}

// testutil.Wait bounds every testutil.Wait in these tests.

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testutil.SyncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	addrs := make(chan net.Addr, 1)
	cfg := testConfig()
	cfg.OnListening = func(a, _ net.Addr) { addrs <- a }
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, logger) }()

	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("runServe returned before listening: %v", err)
	case <-time.After(testutil.Wait):
		t.Fatal("runServe did not start listening")
	}

	client := &http.Client{Timeout: testutil.Wait}
	resp, err := client.Post("http://"+addr.String()+"/v1/consume", "application/json",
		strings.NewReader(`{"key":"cust-42","cost":3,"limit":100,"window":"1h","algorithm":"sliding_log"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"allowed":true,"limit":100,"used":3,"remaining":97,"retry_after_ms":0,"reset_after_ms":3600000}` + "\n"
	if resp.StatusCode != http.StatusOK || string(body) != want {
		t.Errorf("consume: %d %s, want 200 %s", resp.StatusCode, body, want)
	}
	// The keep-alive connection stays open: shutdown must close it.

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runServe: %v", err)
		}
	case <-time.After(testutil.Wait):
		t.Fatal("runServe did not return after cancel")
	}
	client.CloseIdleConnections()

	var first struct{ Level, Msg, Addr, Store string }
	line, _, _ := strings.Cut(logs.String(), "\n")
	if err := json.Unmarshal([]byte(line), &first); err != nil {
		t.Fatalf("first log line %q: %v", line, err)
	}
	if first.Level != "INFO" || first.Msg != "listening" || first.Addr != addr.String() || first.Store != "memory" {
		t.Errorf("first log record %+v, want INFO listening on %s with the memory store", first, addr)
	}
	if strings.Contains(line, "grpc_addr") {
		t.Errorf("gRPC address logged without --grpc-listen: %s", line)
	}
	if strings.Contains(logs.String(), "cust-42") {
		t.Errorf("key logged at info: %s", logs.String())
	}
}

// testConfig is a valid config on a free loopback port with the memory
// store.
func testConfig() Config {
	c := Config{Settings: settings.Default()}
	c.HTTP.Listen = "127.0.0.1:0"
	c.Check.ShutdownTimeout = testutil.Wait
	return c
}

// startServe runs runServe in the background and returns its bound address
// and a channel with its result.
func startServe(t *testing.T, ctx context.Context, shutdownTimeout time.Duration) (string, <-chan error) {
	t.Helper()
	addrs := make(chan net.Addr, 1)
	cfg := testConfig()
	cfg.Check.ShutdownTimeout = shutdownTimeout
	cfg.OnListening = func(a, _ net.Addr) { addrs <- a }
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, nil) }()
	select {
	case a := <-addrs:
		return a.String(), done
	case err := <-done:
		t.Fatalf("runServe returned before listening: %v", err)
	case <-time.After(testutil.Wait):
		t.Fatal("runServe did not start listening")
	}
	return "", nil
}

// startSlowRequest sends a consume whose body is still incomplete once the
// server has begun reading it, and returns the connection and the rest of
// the body.
func startSlowRequest(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testutil.Wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(testutil.Wait))
	body := `{"key":"k","limit":10,"window":"1m"}`
	head := "POST /v1/consume HTTP/1.1\r\nHost: tollgate\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head+body[:5]); err != nil {
		t.Fatal(err)
	}
	// Let the server read the headers, so the connection is active.
	time.Sleep(100 * time.Millisecond)
	return conn, body[5:]
}

func TestServeDrainsInFlightRequests(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := startServe(t, ctx, testutil.Wait)
	conn, rest := startSlowRequest(t, addr)

	cancel()
	select {
	case err := <-done:
		t.Fatalf("runServe returned with a request in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := io.WriteString(conn, rest); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"allowed":true`) {
		t.Errorf("in-flight request: %d %s", resp.StatusCode, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runServe: %v", err)
		}
	case <-time.After(testutil.Wait):
		t.Fatal("runServe did not return after draining")
	}
}

func TestServeShutdownTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := startServe(t, ctx, 200*time.Millisecond)
	startSlowRequest(t, addr) // never finished

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "shutdown") {
			t.Errorf("runServe: %v, want a shutdown timeout error", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("runServe took %s to give up, want about 200ms", d)
		}
	case <-time.After(testutil.Wait):
		t.Fatal("runServe did not return after the shutdown timeout")
	}
}

func TestServeErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	ok := testConfig()
	dir := t.TempDir()
	badPolicies := testutil.WriteTemp(t, dir, "bad.yaml", "policies:\n  - name: p\n    units: 0\n    window: 1m\n")
	goodEnvoy := testutil.WriteTemp(t, dir, "envoy.yaml", "domain: d\n")
	badEnvoy := testutil.WriteTemp(t, dir, "bad-envoy.yaml", "domain: \"\"\n")
	emptyTokens := testutil.WriteTemp(t, dir, "empty-tokens", "# none yet\n\n")
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"redis and cluster", func(c *Config) {
			c.Redis = settings.Redis{Addr: "127.0.0.1:6379", Cluster: []string{"127.0.0.1:7000"}}
		}, "mutually exclusive"},
		// Port 1 on loopback: nothing listens there.
		{"redis unreachable", func(c *Config) { c.Redis.Addr = "127.0.0.1:1" }, "open redis store"},
		{"cluster unreachable", func(c *Config) { c.Redis.Cluster = []string{"127.0.0.1:1", "127.0.0.2:1"} }, "open redis-cluster store"},
		{"redis without port", func(c *Config) { c.Redis.Addr = "127.0.0.1" }, "--redis"},
		{"cluster with empty seed", func(c *Config) { c.Redis.Cluster = []string{"127.0.0.1:7000", ""} }, "--redis-cluster"},
		{"empty listen", func(c *Config) { c.HTTP.Listen = "" }, "--listen"},
		{"bad listen", func(c *Config) { c.HTTP.Listen = "127.0.0.1:http-alt-nope" }, "listen"},
		{"listen address in use", func(c *Config) { c.HTTP.Listen = busy.Addr().String() }, "listen"},
		{"zero shutdown timeout", func(c *Config) { c.Check.ShutdownTimeout = 0 }, "--shutdown-timeout"},
		{"zero check timeout", func(c *Config) { c.Check.Timeout = 0 }, "--check-timeout"},
		{"negative reload interval", func(c *Config) { c.Check.ReloadInterval = -time.Second }, "--reload-interval"},
		{"negative local cache size", func(c *Config) { c.Cache.Size = -1 }, "--local-cache-size -1: must not be negative"},
		{"negative local cache max age", func(c *Config) { c.Cache.MaxAge = -time.Second }, "--local-cache-max-age"},
		{"grpc without envoy config", func(c *Config) { c.GRPC.Listen = "127.0.0.1:0" }, "--grpc-listen needs --envoy-config"},
		{"envoy config without grpc", func(c *Config) { c.GRPC.EnvoyConfig = goodEnvoy }, "--envoy-config needs --grpc-listen"},
		{"missing config", func(c *Config) { c.Config = filepath.Join(dir, "missing.yaml") }, "--config: open"},
		{"invalid config", func(c *Config) { c.Config = badPolicies }, "--config: " + badPolicies + ":3:"},
		{"invalid envoy config", func(c *Config) {
			c.GRPC.Listen, c.GRPC.EnvoyConfig = "127.0.0.1:0", badEnvoy
		}, "--envoy-config: " + badEnvoy + ":1: domain is required"},
		{"grpc address in use", func(c *Config) {
			c.GRPC.Listen, c.GRPC.EnvoyConfig = busy.Addr().String(), goodEnvoy
		}, "grpc listen"},
		{"missing api token file", func(c *Config) { c.HTTP.APITokenFile = filepath.Join(dir, "nope") }, "--api-token-file: open"},
		{"empty admin token file", func(c *Config) { c.HTTP.AdminTokenFile = emptyTokens }, "--admin-token-file: " + emptyTokens + ": no tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			cfg.OnListening = func(net.Addr, net.Addr) { t.Error("listening despite a bad config") }
			done := make(chan error, 1)
			go func() { done <- Run(context.Background(), cfg, nil) }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("runServe: %v, want an error containing %q", err, tt.wantErr)
				}
			case <-time.After(testutil.Wait):
				t.Fatal("runServe did not return")
			}
		})
	}
}

func TestOpenStoreMemory(t *testing.T) {
	st, _, closeStore, err := OpenStore(context.Background(), settings.Redis{}, settings.TLS{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st == nil || closeStore == nil {
		t.Fatal("nil store or close func")
	}
	if err := closeStore(); err != nil {
		t.Errorf("close: %v", err)
	}
	if _, _, _, err := OpenStore(context.Background(), settings.Redis{Addr: "127.0.0.1:6379", Cluster: []string{"127.0.0.1:7000"}}, settings.TLS{}, nil, nil); err == nil || !strings.Contains(err.Error(), "mutually exclusive") {
		t.Errorf("both redis flags: err %v, want mutually exclusive", err)
	}
}
