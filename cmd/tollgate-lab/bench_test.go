package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/internal/service"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/server/rls"
	"github.com/tollgate/tollgate/settings"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis"
)

// runBenchCmd runs `tollgate-lab bench args…` and returns its stdout and
// stderr.
func runBenchCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"bench"}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// benchJSON parses the --json output and checks the fields every report
// has.
func benchJSON(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out)
	}
	for _, f := range []string{"checks_per_sec", "allowed", "denied", "errors", "p50_ms", "p99_ms", "p90_ms", "p999_ms", "checks", "target"} {
		if _, ok := m[f]; !ok {
			t.Errorf("--json output lacks %q:\n%s", f, out)
		}
	}
	return m
}

func TestBenchCommandMemoryJSON(t *testing.T) {
	out, _, err := runBenchCmd(t, "--count", "300", "--keys", "1", "--limit", "30", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	m := benchJSON(t, out)
	if m["allowed"] != 30.0 || m["denied"] != 270.0 || m["errors"] != 0.0 || m["checks"] != 300.0 {
		t.Errorf("allowed %v, denied %v, errors %v, checks %v; want 30, 270, 0, 300", m["allowed"], m["denied"], m["errors"], m["checks"])
	}
	if m["store"] != "memory" || m["stopped_by"] != "count" || m["max_duration_sec"] != 600.0 {
		t.Errorf("store %v, stopped by %v, max duration %v", m["store"], m["stopped_by"], m["max_duration_sec"])
	}
	if _, ok := m["compare"]; ok {
		t.Error("a compare list without --compare")
	}
}

func TestBenchCommandOpenLoopJSON(t *testing.T) {
	out, _, err := runBenchCmd(t, "--rate", "5000", "--count", "200", "--keys", "10", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	m := benchJSON(t, out)
	if m["rate"] != 5000.0 || m["offered_per_sec"] != 5000.0 || m["checks"] != 200.0 || m["stopped_by"] != "count" {
		t.Errorf("rate %v, offered %v, checks %v, stopped by %v; want 5000, 5000, 200, count", m["rate"], m["offered_per_sec"], m["checks"], m["stopped_by"])
	}
}

func TestBenchCommandTable(t *testing.T) {
	out, stderr, err := runBenchCmd(t, "--duration", "150ms", "--concurrency", "2", "--cost", "1:3,5:1", "--algorithm", "gcra")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tollgate-lab bench: library on memory, gcra 1000000 per 1h, cost 1:3,5:1", "checks/s", "p99.9", "tollgate", "duration"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if stderr != "" {
		t.Errorf("stderr (not a terminal: no progress bar): %q", stderr)
	}
}

// The HTTP target against the service's handler on loopback.
func TestBenchCommandHTTP(t *testing.T) {
	st := memory.New(memory.Options{})
	defer st.Close()
	srv := httptest.NewServer(httpapi.New(tollgate.New(st, tollgate.Options{}), httpapi.Options{}))
	defer srv.Close()
	out, _, err := runBenchCmd(t, "--http", srv.URL, "--count", "100", "--keys", "2", "--limit", "10", "--window", "1m", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	m := benchJSON(t, out)
	if m["allowed"] != 20.0 || m["denied"] != 80.0 || m["target"] != "http" {
		t.Errorf("allowed %v, denied %v, target %v; want 20, 80, http", m["allowed"], m["denied"], m["target"])
	}

	// --http-h2c: HTTP/2 without TLS, which this server only speaks when
	// told to; a server that does not refuses every check.
	h2 := httptest.NewUnstartedServer(httpapi.New(tollgate.New(st, tollgate.Options{}), httpapi.Options{}))
	h2.Config.Protocols = new(http.Protocols)
	h2.Config.Protocols.SetHTTP1(true)
	h2.Config.Protocols.SetUnencryptedHTTP2(true)
	h2.Start()
	defer h2.Close()
	out, _, err = runBenchCmd(t, "--http", h2.URL, "--http-h2c", "--count", "100", "--keys", "2", "--limit", "10", "--window", "1m", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if m := benchJSON(t, out); m["allowed"] != 20.0 || m["denied"] != 80.0 || m["errors"] != 0.0 {
		t.Errorf("h2c: allowed %v, denied %v, errors %v; want 20, 80, 0", m["allowed"], m["denied"], m["errors"])
	}
	out, _, err = runBenchCmd(t, "--http", srv.URL, "--http-h2c", "--count", "20", "--keys", "2", "--limit", "10", "--window", "1m", "--concurrency", "2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if m := benchJSON(t, out); m["errors"] != 20.0 {
		t.Errorf("h2c to an HTTP/1.1 server: errors %v, want all 20", m["errors"])
	}
}

// --limits checks several limits of each key together, through the
// library and the HTTP API: the tightest decides.
func TestBenchCommandLimits(t *testing.T) {
	out, _, err := runBenchCmd(t, "--limits", "1000/1s/gcra,30/1h,500/24h/sliding_window", "--count", "300", "--keys", "2", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	m := benchJSON(t, out)
	if m["allowed"] != 60.0 || m["denied"] != 240.0 || len(m["limits"].([]any)) != 3 {
		t.Errorf("library: allowed %v, denied %v, limits %v; want 60, 240 and three limits", m["allowed"], m["denied"], m["limits"])
	}
	st := memory.New(memory.Options{})
	defer st.Close()
	srv := httptest.NewServer(httpapi.New(tollgate.New(st, tollgate.Options{}), httpapi.Options{}))
	defer srv.Close()
	out, _, err = runBenchCmd(t, "--http", srv.URL, "--limits", "5/1h,1000/1m/gcra", "--count", "50", "--keys", "3", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if m := benchJSON(t, out); m["allowed"] != 15.0 || m["denied"] != 35.0 || m["errors"] != 0.0 {
		t.Errorf("http: allowed %v, denied %v, errors %v; want 15, 35, 0", m["allowed"], m["denied"], m["errors"])
	}
}

// The gRPC target against the Envoy rate limit service, with the rule
// --print-envoy-config prints; the service's limit applies.
func TestBenchCommandGRPC(t *testing.T) {
	rules, err := config.ParseEnvoy([]byte(bench.EnvoyConfig("", "", tollgate.PerHour(10))))
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New(memory.Options{})
	defer st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	rls.New(tollgate.New(st, tollgate.Options{}), rules, rls.Options{}).Register(gs)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()

	out, _, err := runBenchCmd(t, "--grpc", ln.Addr().String(), "--count", "50", "--keys", "2", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	m := benchJSON(t, out)
	if m["allowed"] != 20.0 || m["denied"] != 30.0 || m["target"] != "grpc" {
		t.Errorf("allowed %v, denied %v, target %v; want 20, 30, grpc", m["allowed"], m["denied"], m["target"])
	}
	if _, ok := m["limit"]; ok {
		t.Errorf("gRPC report has the bench's limit %v: the service's applies", m["limit"])
	}
}

// --compare=http,deny on the memory store: the service started in process
// on loopback, and denials answered by the store and by the service's local
// cache, each row with its ratios.
func TestBenchCommandCompareHTTPDeny(t *testing.T) {
	out, _, err := runBenchCmd(t, "--compare=http,deny", "--count", "400", "--keys", "10", "--concurrency", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	m := benchJSON(t, out)
	rows, _ := m["compare"].([]any)
	want := []string{bench.NameTollgate, bench.NameHTTP, bench.NameDenyStore, bench.NameDenyCached}
	if len(rows) != len(want) {
		t.Fatalf("%d compare rows, want %d:\n%s", len(rows), len(want), out)
	}
	for i, r := range rows {
		row := r.(map[string]any)
		if row["name"] != want[i] {
			t.Errorf("row %d is %v, want %s", i, row["name"], want[i])
		}
		for _, f := range []string{"checks_per_sec", "ratio_checks_per_sec", "ratio_p99", "p99_ms"} {
			if v, _ := row[f].(float64); v <= 0 {
				t.Errorf("row %s: %s = %v, want positive", want[i], f, row[f])
			}
		}
		if row["checks"] != 400.0 || row["errors"] != 0.0 {
			t.Errorf("row %s: checks %v, errors %v; want 400, 0 (%v)", want[i], row["checks"], row["errors"], row["errors_by_kind"])
		}
	}
	if rows[1].(map[string]any)["allowed"] != 400.0 {
		t.Errorf("http row: %v", rows[1])
	}
	for _, r := range rows[2:] {
		if row := r.(map[string]any); row["denied"] != 400.0 {
			t.Errorf("%v: denied %v, want 400", row["name"], row["denied"])
		}
	}
	if to := rows[3].(map[string]any)["ratio_to"]; to != bench.NameDenyStore {
		t.Errorf("deny-cached ratio_to %v, want deny-store", to)
	}
}

// The service that --compare=http starts stops with its target, and its
// checks reset keys on the store.
func TestStartBenchService(t *testing.T) {
	st := memory.New(memory.Options{})
	defer st.Close()
	limit := tollgate.Limit{Units: 2, Window: time.Minute}
	target, stop, err := startBenchService(t.Context(), st, limit, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, true, false} {
		if ok, err := target.Check(t.Context(), "k", 1); err != nil || ok != want {
			t.Fatalf("check %d: %t, %v; want %t", i, ok, err, want)
		}
	}
	if err := target.(bench.Resetter).Reset(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	if ok, err := target.Check(t.Context(), "k", 1); err != nil || !ok {
		t.Errorf("after reset: %t, %v", ok, err)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if _, err := target.Check(t.Context(), "k", 1); err == nil {
		t.Error("the service still answers after stop")
	}
}

// A benchmark is load: targets off loopback are refused before anything
// connects, unless --allow-remote.
func TestBenchRefusesRemote(t *testing.T) {
	for _, args := range [][]string{
		{"--redis", "10.0.0.5:6379"},
		{"--redis", "redis.internal:6379"},
		{"--redis-cluster", "127.0.0.11:7000,10.0.0.6:7000"},
		{"--http", "http://192.0.2.10:8080"},
		{"--http", "https://example.com"},
		{"--grpc", "[2001:db8::1]:8081"},
	} {
		_, _, err := runBenchCmd(t, append(args, "--count", "1")...)
		if !errors.Is(err, bench.ErrRemote) {
			t.Errorf("%v: %v, want ErrRemote", args, err)
		}
	}
	cfg := benchConfig{HTTP: "http://192.0.2.10:8080", AllowRemote: true, Units: 10, Window: time.Hour, Cost: "1", Algorithm: "sliding_log",
		Load: bench.Config{Keys: 1, Concurrency: 1, Duration: time.Second, CheckTimeout: time.Second}}
	if _, _, err := cfg.validate(); err != nil {
		t.Errorf("--allow-remote: %v", err)
	}
}

func TestBenchCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--compare"}, "--compare needs --redis"},
		{[]string{"--compare=http,seed"}, "--compare needs --redis"},
		{[]string{"--compare=grpc"}, `unknown comparison "grpc"`},
		{[]string{"--compare=http", "--http", "http://127.0.0.1:1"}, "--compare needs the library target"},
		{[]string{"--http", "http://127.0.0.1:1", "--grpc", "127.0.0.1:2"}, "mutually exclusive"},
		{[]string{"--redis", "127.0.0.1:1", "--redis-cluster", "127.0.0.1:2"}, "mutually exclusive"},
		{[]string{"--token-file", "x"}, "--token-file needs --http"},
		{[]string{"--redis-tls"}, "need --redis or --redis-cluster"},
		{[]string{"--cost", "11", "--limit", "10"}, "exceeds --limit"},
		{[]string{"--cost", "0"}, "--cost"},
		{[]string{"--algorithm", "leaky"}, "--algorithm"},
		{[]string{"--window", "1h", "--limit", "0"}, "units 0"},
		{[]string{"--keys", "0"}, "--keys 0"},
		{[]string{"--concurrency", "100000"}, "--concurrency 100000"},
		{[]string{"--duration", "0s"}, "--duration 0s"},
		{[]string{"--check-timeout", "0s"}, "--check-timeout 0s"},
		{[]string{"--rate", "-5"}, "--rate -5"},
		{[]string{"--rounds", "-1"}, "--rounds -1"},
		{[]string{"--rounds", "101", "--compare=http"}, "--rounds 101"},
		{[]string{"--rounds", "2"}, "--rounds needs --compare"},
		{[]string{"--limits", "10"}, "want UNITS/WINDOW"},
		{[]string{"--limits", "10/1h,5/1s/leaky"}, `unknown algorithm "leaky"`},
		{[]string{"--limits", "10/1h", "--cost", "20"}, "exceeds the limit"},
		{[]string{"--limits", "10/1h", "--grpc", "127.0.0.1:2"}, "--limits is for the library"},
		{[]string{"--limits", "10/1h", "--compare=http"}, "--limits and --compare"},
	} {
		_, _, err := runBenchCmd(t, append(tc.args, "--count", "1")...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

func TestBenchStoreFlags(t *testing.T) {
	parse := func(args ...string) settings.Settings {
		t.Helper()
		c := settings.Default()
		f := pflag.NewFlagSet("bench", pflag.ContinueOnError)
		c.AddFlags(f, "Redis", "TLS")
		if err := f.Parse(args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := parse("--redis", "127.0.0.1:1", "--redis-tls=false"); c.TLS.On() {
		t.Errorf("no TLS flag: TLS %+v", c.TLS)
	}
	if c := parse("--redis", "127.0.0.1:1", "--redis-tls"); !c.TLS.On() || c.TLS != (settings.TLS{Enabled: true}) {
		t.Errorf("--redis-tls: TLS %+v", c.TLS)
	}
	c := parse("--redis-cluster", "127.0.0.1:1,127.0.0.2:1", "--redis-tls-ca-file", "ca.pem", "--redis-tls-server-name", "cache", "--redis-tls-insecure-skip-verify")
	if !c.TLS.On() || c.TLS.CAFile != "ca.pem" || c.TLS.ServerName != "cache" || !c.TLS.InsecureSkipVerify {
		t.Errorf("TLS %+v", c.TLS)
	}
	o, err := service.RedisOptions(c.Redis, c.TLS, nil, nil)
	if err != nil || !o.Cluster || len(o.Addrs) != 2 || o.TLS == nil || *o.TLS != (redis.TLSOptions{CAFile: "ca.pem", ServerName: "cache", InsecureSkipVerify: true}) {
		t.Errorf("RedisOptions %+v, %v", o, err)
	}
	if f := pflag.NewFlagSet("", pflag.ContinueOnError); true {
		c.AddFlags(f, "Redis", "TLS")
		if f.Lookup("listen") != nil || f.Lookup("check-timeout") != nil {
			t.Error("the store's flags include serve's others")
		}
	}
}

// --print-envoy-config prints a config that serve loads, with the rule the
// gRPC target's descriptors match.
func TestBenchPrintEnvoyConfig(t *testing.T) {
	out, _, err := runBenchCmd(t, "--print-envoy-config", "--limit", "250", "--window", "90s", "--algorithm", "gcra", "--grpc-domain", "d")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := config.ParseEnvoy([]byte(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	r, ok := rules.Match("d", []config.Entry{{Key: bench.DefaultDescriptorKey, Value: "some-key"}})
	if want := (tollgate.Limit{Units: 250, Window: 90 * time.Second, Algorithm: tollgate.GCRA}); !ok || r.Limit != want {
		t.Errorf("rule %+v, %t; want limit %v", r, ok, want)
	}
}
