package service

// The hostile-client suite: each case attacks a service on loopback,
// bounded in count and time, and asserts that it keeps serving well-formed
// requests, that memory stays bounded and that nothing changes where
// nothing should. Each logs what the server did and the peak heap it
// measured (runtime.MemStats.HeapAlloc, sampled while the attack runs).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlspb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/faultproxy"
	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/settings"
	"github.com/tollgate/tollgate/store/memory"
)

// heapPeak samples the heap every 20 ms until stop is called,
// which returns the highest HeapAlloc seen, in MiB.
func heapPeak() (stop func() float64) {
	var peak atomic.Uint64
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		for {
			p := peak.Load()
			if m.HeapAlloc <= p || peak.CompareAndSwap(p, m.HeapAlloc) {
				return
			}
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond) // ReadMemStats stops the world: not too often
		defer tick.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() float64 {
		close(done)
		wg.Wait()
		sample()
		return float64(peak.Load()) / (1 << 20)
	}
}

// liveHeap is the heap in use after a collection, in MiB.
func liveHeap() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// 10^6 distinct keys of 512 bytes with a window of about 30 days (the
// attack that pinned memory for a month) on the memory store as serve wraps it: the key cap holds, the
// evictions are counted, and a key in use before the flood is still
// counted when the flood's keys are nearer their reset.
func TestHostileDistinctKeys(t *testing.T) {
	const (
		keys   = 1_000_000
		maxKey = 100_000
		budget = 30 * time.Second // under -race the loop may stop early; it logs how far it got
	)
	s := settings.Default()
	s.Memory.MaxKeys = maxKey
	m := metrics.New()
	st, _, closeStore, err := openStore(context.Background(), s, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	mem := st.(*memory.Store)
	lim := tollgate.New(WrapStore(st, s, m), tollgate.Options{})
	ctx := context.Background()
	base := liveHeap()

	// A key of a long window, in use before the flood.
	month := tollgate.Limit{Units: 10, Window: tollgate.MaxWindow}
	if _, err := lim.Consume(ctx, "victim", 3, month); err != nil {
		t.Fatal(err)
	}
	stop := heapPeak()
	// An hour short of the victim's window, so its keys reset first (a
	// flood of the victim's own window would evict it first: its usage is
	// older, so nearer its reset).
	flood := tollgate.Limit{Units: 1_000_000, Window: tollgate.MaxWindow - time.Hour}
	pad := strings.Repeat("k", tollgate.DefaultMaxKeyLen-12) // 512-byte keys, the longest
	start := time.Now()
	sent := 0
	unavailable := 0 // past the check timeout on a busy machine: allowed, counted
	for ; sent < keys && time.Since(start) < budget; sent++ {
		_, err := lim.Consume(ctx, pad+fmt.Sprintf("%012d", sent), 1, flood)
		switch {
		case errors.Is(err, tollgate.ErrUnavailable):
			unavailable++
		case err != nil:
			t.Fatal(err)
		}
	}
	peak := stop()
	held := mem.Keys()
	res, err := lim.Peek(ctx, "victim", month)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("distinct keys: %d sent in %s (%d past the check timeout), %d held (cap %d), %s, victim used=%d; heap %.0f MiB before, peak %.0f MiB, live after %.0f MiB",
		sent, time.Since(start).Round(time.Millisecond), unavailable, held, maxKey, metricLine(t, m, "tollgate_memory_evictions_total"), res.Used, base, peak, liveHeap())
	if held > maxKey {
		t.Errorf("%d keys held, cap %d", held, maxKey)
	}
	if sent > maxKey && res.Used != 3 {
		t.Errorf("the older key of a longer window was evicted before the flood's: used %d, want 3", res.Used)
	}
	// About 680 bytes a key of 512 bytes (store/memory's measurement),
	// with room for the map's growth and the GC's lag.
	if limit := base + 3*float64(maxKey)*680/(1<<20) + 64; peak > limit {
		t.Errorf("peak heap %.0f MiB, want under %.0f MiB", peak, limit)
	}
	if r, err := lim.Consume(ctx, "well-formed", 1, tollgate.PerMinute(5)); err != nil || !r.Allowed {
		t.Errorf("a well-formed request after the flood: %+v, %v", r, err)
	}
}

// metricLine returns the line of the metric name (with its labels) that m
// serves, or "" if none.
func metricLine(t *testing.T, m *metrics.Metrics, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, name) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// countingStore counts the calls that reach the store.
type countingStore struct {
	tollgate.Store
	calls atomic.Int64
}

func (s *countingStore) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	s.calls.Add(1)
	return s.Store.Do(ctx, req)
}

func (s *countingStore) Reset(ctx context.Context, key string) error {
	s.calls.Add(1)
	return s.Store.Reset(ctx, key)
}

// hostileServe serves the test Envoy rules and policies over a counting
// memory store.
func hostileServe(t *testing.T, edit func(*Config)) (*server, *countingStore) {
	t.Helper()
	m := memory.New(memory.Options{})
	t.Cleanup(func() { _ = m.Close() })
	st := &countingStore{Store: m}
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Store = st
	cfg.Config = testutil.WriteTemp(t, dir, "tollgate.yaml", testPolicyFile)
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.GRPC.EnvoyConfig = testutil.WriteTemp(t, dir, "envoy.yaml", testEnvoy)
	if edit != nil {
		edit(&cfg)
	}
	return serve(t, cfg), st
}

// wellFormed checks that the service still answers well-formed requests
// on both listeners.
func wellFormed(t *testing.T, s *server, conn *grpc.ClientConn, headers ...string) {
	t.Helper()
	n := wellFormedN.Add(1) // a new key each time: the rule allows 2 a minute
	if r := post(t, s.http, "/v1/consume", `{"key":"well-formed","limit":1000000,"window":"1m"}`, headers...); r.status != 200 {
		t.Errorf("a well-formed HTTP request: %d %s", r.status, r.body)
	}
	if got := overallCode(t, conn, fmt.Sprint("user=well-formed-", n)); got != "OK" {
		t.Errorf("a well-formed gRPC request: %s", got)
	}
}

var wellFormedN atomic.Int64

func descriptors(n int, kv string) []*rlv3.RateLimitDescriptor {
	k, v, _ := strings.Cut(kv, "=")
	ds := make([]*rlv3.RateLimitDescriptor, n)
	for i := range ds {
		ds[i] = &rlv3.RateLimitDescriptor{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: k, Value: v}}}
	}
	return ds
}

// A descriptor bomb: 10^5 descriptors in one request (1.3 MB, over the
// message cap) and 4000 (under it, over the descriptor cap). Neither
// reaches the store.
func TestHostileDescriptorBomb(t *testing.T) {
	s, st := hostileServe(t, nil)
	conn := dialRLS(t, s.grpc)
	client := rlspb.NewRateLimitServiceClient(conn)
	stop := heapPeak()
	for _, tc := range []struct {
		n    int
		want codes.Code
	}{{100_000, codes.ResourceExhausted}, {4000, codes.InvalidArgument}, {settings.DefaultGRPCMaxDescriptors + 1, codes.InvalidArgument}} {
		reps := 20
		if tc.n > 10_000 {
			reps = 5 // building 1.3 MB requests is the client's cost, not the server's
		}
		for range reps {
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Wait)
			_, err := client.ShouldRateLimit(ctx, &rlspb.RateLimitRequest{Domain: "test", Descriptors: descriptors(tc.n, "user=bomb")})
			cancel()
			if status.Code(err) != tc.want {
				t.Fatalf("%d descriptors: %v, want %s", tc.n, err, tc.want)
			}
		}
		t.Logf("descriptor bomb: %d requests of %d descriptors: %s", reps, tc.n, tc.want)
	}
	peak := stop()
	if n := st.calls.Load(); n != 0 {
		t.Errorf("%d store calls for refused requests", n)
	}
	t.Logf("descriptor bomb: 0 store calls; peak heap %.0f MiB", peak)
	wellFormed(t, s, conn)
}

// Oversized messages: a 1 MiB HTTP body and a 1 MiB gRPC descriptor value
// are refused before decoding, and reach nothing.
func TestHostileOversized(t *testing.T) {
	s, st := hostileServe(t, nil)
	conn := dialRLS(t, s.grpc)
	stop := heapPeak()
	big := strings.Repeat("x", 1<<20)
	for range 20 {
		r := post(t, s.http, "/v1/consume", `{"key":"`+big+`","limit":10,"window":"1m"}`)
		if r.status != 400 || !strings.Contains(r.body, `"code":"body_too_large"`) {
			t.Fatalf("1 MiB body: %d %.200s", r.status, r.body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Wait)
		_, err := rateLimit(ctx, conn, "user="+big)
		cancel()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("1 MiB descriptor: %v, want ResourceExhausted", err)
		}
	}
	peak := stop()
	if n := st.calls.Load(); n != 0 {
		t.Errorf("%d store calls for refused requests", n)
	}
	t.Logf("oversized: 20 HTTP bodies of 1 MiB: 400 body_too_large; 20 gRPC messages of 1 MiB: ResourceExhausted; 0 store calls; peak heap %.0f MiB", peak)
	wellFormed(t, s, conn)
}

// Slowloris: connections that send a request's headers a byte at a time
// never hold the server: it serves others meanwhile and closes them after
// its header timeout.
func TestHostileSlowloris(t *testing.T) {
	s, _ := hostileServe(t, nil)
	conn := dialRLS(t, s.grpc)
	const slow = 200
	stop := heapPeak()
	var conns []net.Conn
	for range slow {
		c, err := net.DialTimeout("tcp", s.http, testutil.Wait)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "POST /v1/consume HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// A byte now and then on each, while well-formed requests are served.
	for range 3 {
		for _, c := range conns {
			_, _ = c.Write([]byte("a"))
		}
		wellFormed(t, s, conn)
		time.Sleep(100 * time.Millisecond)
	}
	// The server closes them (ReadHeaderTimeout): each read ends.
	closed := 0
	deadline := time.Now().Add(readHeaderTimeout + 2*testutil.Wait)
	for _, c := range conns {
		_ = c.SetReadDeadline(deadline)
		_, err := io.ReadAll(c)
		var ne net.Error
		if !(errors.As(err, &ne) && ne.Timeout()) {
			closed++
		}
	}
	peak := stop()
	t.Logf("slowloris: %d slow connections; well-formed requests served meanwhile; %d closed by the server (header timeout %s); peak heap %.0f MiB",
		slow, closed, readHeaderTimeout, peak)
	if closed != slow {
		t.Errorf("%d of %d slow connections still open", slow-closed, slow)
	}
	wellFormed(t, s, conn)
}

// Token scope violations, many and varied, change no usage.
func TestHostileScopeViolations(t *testing.T) {
	s, st := hostileServe(t, func(cfg *Config) {
		dir := t.TempDir()
		cfg.HTTP.APITokenFile = testutil.WriteTemp(t, dir, "api", "tok-p policies=p ops=check inline=false\nfull\n")
		cfg.HTTP.AdminTokenFile = testutil.WriteTemp(t, dir, "admin", "admin\n")
	})
	conn := dialRLS(t, s.grpc)
	if r := post(t, s.http, "/v1/consume", `{"key":"k","policy":"open"}`, "Authorization: Bearer full"); r.status != 200 {
		t.Fatalf("setup: %d %s", r.status, r.body)
	}
	before := st.calls.Load()
	bodies := []struct{ path, body string }{
		{"/v1/consume", `{"key":"k","policy":"open"}`},
		{"/v1/consume", `{"key":"k","policy":"closed"}`},
		{"/v1/consume", `{"key":"k","policy":"no-such"}`},
		{"/v1/consume", `{"key":"k","limit":1000000000000000,"window":"720h"}`},
		{"/v1/peek", `{"key":"k","limits":[{"limit":1,"window":"1m"}]}`},
		{"/v1/refund", `{"key":"k","policy":"p","cost":9223372036854775807}`},
		{"/v1/refund", `{"key":"k","policy":"open","cost":9223372036854775807}`},
		{"/v1/reset", `{"key":"k","policy":"p"}`},
		{"/v1/reset", `{"key":"k"}`},
	}
	stop := heapPeak()
	const rounds = 50
	for range rounds {
		for _, b := range bodies {
			if r := post(t, s.http, b.path, b.body, "Authorization: Bearer tok-p"); r.status != 403 || !strings.Contains(r.body, `"code":"forbidden"`) {
				t.Fatalf("%s %s: %d %s, want 403 forbidden", b.path, b.body, r.status, r.body)
			}
		}
	}
	peak := stop()
	if n := st.calls.Load() - before; n != 0 {
		t.Errorf("%d store calls from out-of-scope requests", n)
	}
	r := post(t, s.http, "/v1/peek", `{"key":"k","policy":"open"}`, "Authorization: Bearer full")
	if !strings.Contains(r.body, `"used":1,`) {
		t.Errorf("usage changed: %s", r.body)
	}
	t.Logf("scope violations: %d requests, all 403 forbidden, 0 store calls, usage unchanged; peak heap %.0f MiB", rounds*len(bodies), peak)
	wellFormed(t, s, conn, "Authorization: Bearer full")
}

// A store that panics on some keys, hit by many requests at once on both
// listeners, while well-formed requests are served: each answers 500 or
// INTERNAL, every panic is counted, and no goroutine is left behind.
func TestHostilePanickingStore(t *testing.T) {
	s, _ := hostileServe(t, func(cfg *Config) { cfg.Store = newPanickingStore(t) })
	conn := dialRLS(t, s.grpc)
	wellFormed(t, s, conn)
	goroutines := runtime.NumGoroutine()
	stop := heapPeak()
	const n = 100
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := range n {
		wg.Go(func() {
			if r := post(t, s.http, "/v1/consume", fmt.Sprintf(`{"key":"boom-%d","limit":10,"window":"1m"}`, i)); r.status != 500 {
				bad.Add(1)
			}
		})
		wg.Go(func() {
			if got := overallCode(t, conn, fmt.Sprintf("user=boom-%d", i)); got != codes.Internal.String() {
				bad.Add(1)
			}
		})
	}
	wg.Wait()
	peak := stop()
	if bad.Load() != 0 {
		t.Errorf("%d panicking requests not answered 500/INTERNAL", bad.Load())
	}
	wellFormed(t, s, conn)
	_, m := get(t, s.http, "/metrics")
	for _, want := range []string{fmt.Sprintf(`tollgate_panics_total{server="http"} %d`, n), fmt.Sprintf(`tollgate_panics_total{server="grpc"} %d`, n)} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	after := runtime.NumGoroutine()
	for end := time.Now().Add(testutil.Wait); after > goroutines+5 && time.Now().Before(end); after = runtime.NumGoroutine() {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("panicking store: %d HTTP requests answered 500, %d gRPC calls INTERNAL, all counted; goroutines %d before, %d after; peak heap %.0f MiB", n, n, goroutines, after, peak)
	if after > goroutines+5 {
		t.Errorf("%d goroutines after, %d before", after, goroutines)
	}
}

// gRPC with Redis black-holed (a partition: nothing answers, nothing is
// refused) under fail_open: requests of the most descriptors, many at
// once, each answer OK within the client's deadline (their store calls
// share one check timeout, rather than one each; the slowest is logged);
// the service keeps serving, and recovers when Redis is back. It logs the goroutines the black hole piles up (store/redis's
// retry leaves one per timed-out call until its attempt ends).
func TestHostileRedisDownFailOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := testcluster.StartStandalone(ctx, testcluster.Options{Logf: t.Logf})
	if errors.Is(err, testcluster.ErrNoServer) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	proxy, err := faultproxy.New("127.0.0.1:0", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Redis.Addr = proxy.Addr()
	cfg.Config = testutil.WriteTemp(t, dir, "tollgate.yaml", testPolicyFile)
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.GRPC.EnvoyConfig = testutil.WriteTemp(t, dir, "envoy.yaml", testEnvoy)
	s := serve(t, cfg)
	defer proxy.SetMode(faultproxy.Forward) // before the service stops
	conn := dialRLS(t, s.grpc)
	client := rlspb.NewRateLimitServiceClient(conn)
	call := func(ds []*rlv3.RateLimitDescriptor) (*rlspb.RateLimitResponse, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Wait)
		defer cancel()
		start := time.Now()
		resp, err := client.ShouldRateLimit(ctx, &rlspb.RateLimitRequest{Domain: "test", Descriptors: ds})
		return resp, time.Since(start), err
	}
	if resp, _, err := call(descriptors(2, "open=x")); err != nil || resp.GetOverallCode() != rlspb.RateLimitResponse_OK {
		t.Fatalf("before the partition: %v, %v", resp, err)
	}

	proxy.SetMode(faultproxy.BlackHole)
	baseline := runtime.NumGoroutine()
	var peakG atomic.Int64
	stopG := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			if n := int64(runtime.NumGoroutine()); n > peakG.Load() {
				peakG.Store(n)
			}
			select {
			case <-stopG:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	stop := heapPeak()
	const rpcs = 20
	var wg sync.WaitGroup
	var slowest atomic.Int64
	var failed atomic.Int64
	for i := range rpcs {
		wg.Go(func() {
			ds := descriptors(settings.DefaultGRPCMaxDescriptors, fmt.Sprint("open=", i))
			resp, took, err := call(ds)
			if err != nil || resp.GetOverallCode() != rlspb.RateLimitResponse_OK {
				failed.Add(1)
				t.Errorf("RPC %d under the partition: %v, %v (after %s)", i, resp.GetOverallCode(), err, took)
			}
			for d := int64(took); d > slowest.Load() && !slowest.CompareAndSwap(slowest.Load(), d); {
			}
		})
	}
	wg.Wait()
	// Every RPC has returned, the partition is still on: what is left are
	// the store's calls abandoned at their deadline (store/redis bounded).
	leftover := runtime.NumGoroutine()
	// HTTP: a fail_open policy lets requests through, marked degraded.
	r := post(t, s.http, "/v1/consume", `{"key":"k","policy":"open"}`)
	if r.status != 200 || r.header.Get("Tollgate-Degraded") != "store-unavailable" {
		t.Errorf("HTTP fail_open policy under the partition: %d %s", r.status, r.body)
	}
	close(stopG)
	sampler.Wait()
	peak := stop()
	t.Logf("redis black-holed, fail_open: %d RPCs of %d descriptors at once, %d failed, slowest %s (check timeout %s per RPC); goroutines %d at the cut, peak %d, %d left once every RPC had returned; peak heap %.0f MiB",
		rpcs, settings.DefaultGRPCMaxDescriptors, failed.Load(), time.Duration(slowest.Load()).Round(time.Millisecond), cfg.Check.Timeout, baseline, peakG.Load(), leftover, peak)

	proxy.SetMode(faultproxy.Forward)
	deadline := time.Now().Add(3 * testutil.Wait)
	for {
		resp, _, err := call(descriptors(1, fmt.Sprint("user=back-", time.Now().UnixNano())))
		if err == nil && resp.GetOverallCode() == rlspb.RateLimitResponse_OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after Redis came back: %v, %v", resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := runtime.NumGoroutine()
	for end := time.Now().Add(testutil.Wait); after > baseline+20 && time.Now().Before(end); after = runtime.NumGoroutine() {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("redis back: serving; goroutines %d (%d at the cut)", after, baseline)
}
