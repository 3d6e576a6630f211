package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis"
	"github.com/tollgate/tollgate/store/wrap"
)

// TestServeMetrics serves checks over HTTP and gRPC, a cached denial and
// two reloads, and reads them back from /metrics without a token.
func TestServeMetrics(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.HTTP.APITokenFile = testutil.WriteTemp(t, dir, "api-tokens", "secret\n")
	cfg.Config = filepath.Join(dir, "tollgate.yaml")
	testutil.WriteAtomic(t, cfg.Config, policyWithUnits(1))
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.GRPC.EnvoyConfig = testutil.WriteTemp(t, dir, "envoy.yaml", testEnvoy)
	cfg.Check.ReloadInterval = time.Hour // only the signal reloads
	hup := make(chan os.Signal, 1)
	cfg.Reload = hup
	s := serve(t, cfg)

	const auth = "Authorization: Bearer secret"
	for i, want := range []int{200, 429, 429} { // the second denial comes from the local cache
		if got := post(t, s.http, "/v1/consume", `{"key":"k","policy":"p"}`, auth).status; got != want {
			t.Fatalf("consume %d: %d, want %d", i+1, got, want)
		}
	}
	if got := post(t, s.http, "/v1/consume", `{"key":"k","limit":5,"window":"1m"}`, auth).status; got != 200 {
		t.Fatalf("inline consume: %d", got)
	}
	if got := post(t, s.http, "/v1/consume", `{"key":"k","limit":0,"window":"1m"}`, auth).status; got != 400 {
		t.Fatalf("bad consume: %d", got) // not a check
	}
	conn := dialRLS(t, s.grpc)
	for _, want := range []string{"OK", "OK", "OVER_LIMIT"} {
		if got := overallCode(t, conn, "user=a"); got != want {
			t.Fatalf("gRPC: %s, want %s", got, want)
		}
	}
	testutil.WriteAtomic(t, cfg.Config, policyWithUnits(0))
	hup <- nil
	testutil.WaitLog(t, s.logs, `"msg":"envoy configs reloaded"`)
	testutil.WaitLog(t, s.logs, `"msg":"config not reloaded; the previous one stays in force"`)

	client := &http.Client{Timeout: testutil.Wait}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + s.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics without a token: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`tollgate_checks_total{policy="p",result="allowed"} 1`,
		`tollgate_checks_total{policy="p",result="denied"} 2`,
		`tollgate_checks_total{policy="inline",result="allowed"} 1`,
		`tollgate_checks_total{policy="test",result="allowed"} 2`, // the domain: the rule has no name
		`tollgate_checks_total{policy="test",result="denied"} 1`,
		`tollgate_local_cache_hits_total 1`,
		`tollgate_store_duration_seconds_count{op="consume"} 6`,
		`tollgate_store_errors_total{kind="timeout"} 0`,
		`tollgate_config_reloads_total{config="policies",result="error"} 1`,
		`tollgate_config_reloads_total{config="envoy",result="ok"} 1`,
		`tollgate_redis_redirects_total{kind="moved"} 0`,
		`tollgate_redis_topology_refreshes_total 0`,
		"\ngo_goroutines ",
		"\nprocess_start_time_seconds ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(body), `"k"`) {
		t.Errorf("/metrics shows a key:\n%s", body)
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestStoreErrorKind(t *testing.T) {
	unavailable := func(err error) error { return fmt.Errorf("%w: %w", tollgate.ErrUnavailable, err) }
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.DeadlineExceeded, metrics.StoreTimeout},
		{unavailable(context.DeadlineExceeded), metrics.StoreTimeout},
		{unavailable(&os.SyscallError{Syscall: "read", Err: timeoutErr{}}), metrics.StoreTimeout},
		{unavailable(timeoutErr{}), metrics.StoreTimeout},
		{unavailable(syscall.ECONNREFUSED), metrics.StoreUnavailable},
		{unavailable(io.EOF), metrics.StoreUnavailable},
		{unavailable(redis.ErrCircuitOpen), metrics.StoreUnavailable},
		{fmt.Errorf("%w: %w: 3 values, want 4", tollgate.ErrUnavailable, redis.ErrBadReply), metrics.StoreOther},
		{errors.New("a store that breaks the contract"), metrics.StoreOther},
	} {
		if got := storeErrorKind(tt.err); got != tt.want {
			t.Errorf("storeErrorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	// Redis error replies, by redis.Kind.
	for kind, want := range map[redis.Kind]string{
		redis.KindCircuitOpen: metrics.StoreUnavailable,
		redis.KindTimeout:     metrics.StoreTimeout,
		redis.KindCanceled:    metrics.StoreUnavailable,
		redis.KindMoved:       metrics.StoreUnavailable,
		redis.KindAsk:         metrics.StoreUnavailable,
		redis.KindClusterDown: metrics.StoreUnavailable,
		redis.KindTryAgain:    metrics.StoreUnavailable,
		redis.KindLoading:     metrics.StoreUnavailable,
		redis.KindReadOnly:    metrics.StoreUnavailable,
		redis.KindMasterDown:  metrics.StoreUnavailable,
		redis.KindClosed:      metrics.StoreUnavailable,
		redis.KindConn:        metrics.StoreUnavailable,
		redis.KindNoScript:    metrics.StoreOther,
		redis.KindOther:       metrics.StoreOther,
	} {
		if got := metricKind(kind); got != want {
			t.Errorf("metricKind(%v) = %q, want %q", kind, got, want)
		}
	}
}

// calls records StoreCall.
type calls []string

func (c *calls) StoreCall(op string, took time.Duration, errKind string) {
	*c = append(*c, op+" "+errKind)
	if took < 0 {
		*c = append(*c, "negative duration")
	}
}

func TestObservedStore(t *testing.T) {
	var got calls
	ctx := context.Background()
	req := tollgate.Request{Op: tollgate.OpPeek, Key: "k", Limits: []tollgate.Limit{tollgate.PerHour(1)}, Cost: 1, MaxLogEntries: tollgate.DefaultMaxLogEntries}

	mem := memory.New(memory.Options{})
	defer mem.Close()
	ok := wrap.Observe(mem, &got, storeErrorKind)
	if _, err := ok.Do(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := ok.Reset(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	failing := wrap.Observe(failingStore{}, &got, storeErrorKind)
	_, _ = failing.Do(ctx, req)
	_ = failing.Reset(ctx, "k")
	hanging := wrap.Observe(hangingStore{}, &got, storeErrorKind)
	timeout, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	_, _ = hanging.Do(timeout, req)
	gone, cancelGone := context.WithCancel(ctx)
	cancelGone() // the caller went away: not reported
	_, _ = hanging.Do(gone, req)

	want := calls{"peek ", "reset ", "peek unavailable", "reset unavailable", "peek timeout"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("reported %q, want %q", got, want)
	}
}
