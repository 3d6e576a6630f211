package metrics_test

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/server/observe"
	"github.com/tollgate/tollgate/store/overlimit"
	"github.com/tollgate/tollgate/store/redis"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// *Metrics is the observer of every reporter.
var (
	_ observe.Observer   = (*metrics.Metrics)(nil)
	_ overlimit.Observer = (*metrics.Metrics)(nil)
	_ redis.Observer     = (*metrics.Metrics)(nil)
	_ metrics.Observer   = (*metrics.Metrics)(nil)
)

// scrape returns what Handler serves.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func TestMetrics(t *testing.T) {
	m := metrics.New()
	m.Check("api-hourly", observe.ResultAllowed)
	m.Check("api-hourly", observe.ResultAllowed)
	m.Check(observe.InlinePolicy, observe.ResultDenied)
	m.StoreCall("consume", 2*time.Millisecond, "")
	m.StoreCall("reset", 150*time.Millisecond, metrics.StoreTimeout)
	m.ConfigReload(metrics.ConfigPolicies, nil)
	m.ConfigReload(metrics.ConfigEnvoy, errors.New("bad"))
	m.CacheHit()
	m.Retry("conn")
	m.Retry("conn")
	m.FastFail()
	m.Heal("redirect_loop")
	m.Redirect(metrics.RedirectAsk)
	m.TopologyRefresh()
	m.Reconnect()
	m.Reconnect()

	got := scrape(t, m)
	for _, want := range []string{
		"# TYPE tollgate_checks_total counter",
		`tollgate_checks_total{policy="api-hourly",result="allowed"} 2`,
		`tollgate_checks_total{policy="inline",result="denied"} 1`,
		"# TYPE tollgate_store_duration_seconds histogram",
		`tollgate_store_duration_seconds_bucket{op="consume",le="0.0025"} 1`,
		`tollgate_store_duration_seconds_bucket{op="consume",le="0.001"} 0`,
		`tollgate_store_duration_seconds_count{op="reset"} 1`,
		`tollgate_store_errors_total{kind="timeout"} 1`,
		`tollgate_store_errors_total{kind="unavailable"} 0`,
		`tollgate_store_errors_total{kind="other"} 0`,
		`tollgate_config_reloads_total{config="policies",result="ok"} 1`,
		`tollgate_config_reloads_total{config="envoy",result="error"} 1`,
		"tollgate_local_cache_hits_total 1",
		`tollgate_redis_redirects_total{kind="ask"} 1`,
		`tollgate_redis_redirects_total{kind="moved"} 0`,
		`tollgate_redis_heals_total{reason="redirect_loop"} 1`,
		`tollgate_redis_retries_total{kind="conn"} 2`,
		"tollgate_redis_fast_failures_total 1",
		"tollgate_redis_topology_refreshes_total 1",
		"tollgate_redis_reconnects_total 2",
		"\ngo_goroutines ",
		"\ngo_memstats_alloc_bytes ",
		"\nprocess_start_time_seconds ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", got)
	}
}

// Each Metrics has its own registry: two never clash, and neither touches
// the global one.
func TestIndependentRegistries(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.CacheHit()
	if got := scrape(t, b); !strings.Contains(got, "tollgate_local_cache_hits_total 0") {
		t.Errorf("a's hit shows in b")
	}
	if a.Registry() == b.Registry() {
		t.Error("shared registry")
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *metrics.Metrics
	m.Check("p", observe.ResultAllowed)
	m.StoreCall("consume", time.Millisecond, metrics.StoreOther)
	m.ConfigReload(metrics.ConfigPolicies, nil)
	m.CacheHit()
	m.Retry("timeout")
	m.FastFail()
	m.Heal("persistent_errors")
	m.Redirect(metrics.RedirectMoved)
	m.TopologyRefresh()
	m.Reconnect()
	var o observe.Observer = m // a typed nil in an interface
	o.Check("p", observe.ResultDenied)
}

func TestConcurrentUse(t *testing.T) {
	m := metrics.New()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				m.Check("p", observe.ResultAllowed)
				m.StoreCall("consume", time.Microsecond, "")
				m.CacheHit()
			}
		})
	}
	wg.Go(func() {
		m.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/metrics", nil))
	})
	wg.Wait()
	if got := scrape(t, m); !strings.Contains(got, `tollgate_checks_total{policy="p",result="allowed"} 800`) {
		t.Errorf("lost updates:\n%s", got)
	}
}
