// Package metrics counts what Tollgate's servers and stores do, for
// Prometheus.
//
// The servers and stores do not import this package. The servers report
// through observe.Observer (package server/observe: Check), each store
// declares the small interface it reports through (overlimit.Observer:
// CacheHit; redis.Observer: Retry, FastFail, Heal, …), where a nil Observer
// reports nothing, and *Metrics implements all of them; Observer lists every
// event. So only the
// command links Prometheus (whose package registers collectors on its global
// registry when imported), and a program that embeds httpapi or a store does
// not.
//
// A Metrics keeps its own prometheus.Registry, never the global one, with the
// Go runtime and process collectors. Handler serves it.
//
// # Metrics
//
//	tollgate_checks_total{policy,result}          counter    rate-limit decisions
//	tollgate_store_duration_seconds{op}           histogram  store round trips, failures included
//	tollgate_store_errors_total{kind}             counter    failed store calls
//	tollgate_config_reloads_total{config,result}  counter    policy and Envoy config reloads
//	tollgate_local_cache_hits_total               counter    denials answered by the local over-limit cache
//	tollgate_panics_total{server}                 counter    panics recovered in a handler or interceptor (http, grpc)
//	tollgate_memory_evictions_total               counter    live keys the memory store forgot at its key cap
//	tollgate_redis_retries_total{kind}            counter    Redis attempts retried, by the failed attempt's error kind
//	tollgate_redis_fast_failures_total            counter    calls refused at once by an open circuit
//	tollgate_redis_heals_total{reason}            counter    Redis clients rebuilt after persistent trouble
//	tollgate_redis_redirects_total{kind}          counter    MOVED and ASK redirects
//	tollgate_redis_topology_refreshes_total       counter    slot-map refreshes
//	tollgate_redis_reconnects_total               counter    connections re-established
//
// Label values:
//
//   - policy: the HTTP API policy's name, observe.InlinePolicy for an inline limit;
//     for the Envoy rate limit service the rule's name, or its domain when
//     the rule has no name. They come from the configs, so their number is
//     bounded by them.
//   - result: observe.ResultAllowed, ResultDenied, ResultShadowDenied,
//     ResultError, ResultFailOpen.
//   - op: "consume", "peek", "refund" (tollgate.Op.String) or "reset".
//   - kind of a store error: StoreTimeout, StoreUnavailable, StoreOther.
//   - config: ConfigPolicies or ConfigEnvoy; its result "ok" or "error".
//   - kind of a retry: redis.Kind of the failed attempt ("timeout",
//     "conn", "moved", "clusterdown", …); reason of a heal: the store's
//     ("redirect_loop", "persistent_errors", "topology_changed"). Fixed sets of store/redis.
//   - kind of a redirect: RedirectMoved or RedirectAsk.
//
// The Redis store reports retries, fast failures, heals, redirects,
// topology refreshes and reconnects through its Observer.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate/server/observe"
)

// Kinds of store errors: the values of the kind label of
// tollgate_store_errors_total.
const (
	// StoreTimeout: the store did not answer within the check timeout
	// (or the caller's deadline).
	StoreTimeout = "timeout"
	// StoreUnavailable: the store could not be reached or refused to serve
	// (connection refused or lost, cluster down, loading, failover in
	// progress).
	StoreUnavailable = "unavailable"
	// StoreOther: any other failure, such as an unexpected reply or a
	// script error.
	StoreOther = "other"
)

// The configs whose reloads are counted: the values of the config label of
// tollgate_config_reloads_total.
const (
	// ConfigPolicies is the policy file (--config).
	ConfigPolicies = "policies"
	// ConfigEnvoy are the Envoy descriptor configs (--envoy-config).
	ConfigEnvoy = "envoy"
)

// Kinds of Redis Cluster redirects: the values of the kind label of
// tollgate_redis_redirects_total.
const (
	RedirectMoved = "moved"
	RedirectAsk   = "ask"
)

// Observer is every event Tollgate reports. *Metrics implements it; each
// reporter takes only the part it uses, as its own interface, and treats nil
// as "report nothing". Implementations must be safe for concurrent use and
// fast: they are called on every request.
type Observer interface {
	// Check reports one rate-limit decision (see observe.Observer).
	observe.Observer
	// StoreCall reports one call of the store (a round trip for Redis, or a
	// few when it retries): op is "consume", "peek", "refund" or "reset",
	// took how long it took, and errKind "" for success or a Store* kind.
	// Calls a local cache answers are not store calls.
	StoreCall(op string, took time.Duration, errKind string)
	// ConfigReload reports a reload of the ConfigPolicies or ConfigEnvoy
	// config: err is nil when the new version is in force.
	ConfigReload(config string, err error)
	// CacheHit reports a denial answered by the local over-limit cache
	// without asking the store.
	CacheHit()

	// The Redis store's events (redis.Observer has the first three). Kinds
	// and reasons are short snake_case words from fixed sets the store
	// documents; never anything derived from keys or addresses.

	// Retry reports an attempt that failed with an error of kind
	// (its redis.Kind) and is tried again.
	Retry(kind string)
	// FastFail reports a call refused at once because its hash slot's
	// circuit is open.
	FastFail()
	// Heal reports that the store rebuilt its client after persistent
	// trouble, for reason ("redirect_loop", "persistent_errors", "topology_changed").
	Heal(reason string)
	// Redirect reports a MOVED or ASK reply (RedirectMoved, RedirectAsk)
	// that the client followed.
	Redirect(kind string)
	// TopologyRefresh reports a refresh of the cluster's slot map.
	TopologyRefresh()
	// Reconnect reports a connection to a Redis node re-established after
	// it was lost.
	Reconnect()
}

var _ Observer = (*Metrics)(nil)

// storeBuckets are the bounds of tollgate_store_duration_seconds, in
// seconds: 100 µs to 2.5 s, around the 100 ms default check timeout.
var storeBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// maxScrapesInFlight bounds concurrent scrapes of Handler, which needs no
// token.
const maxScrapesInFlight = 4

// Metrics is the Prometheus implementation of Observer. It is safe for
// concurrent use. Its methods do nothing on a nil *Metrics, so a nil
// *Metrics stored in an interface is harmless.
type Metrics struct {
	reg *prometheus.Registry

	checks            *prometheus.CounterVec
	storeDuration     *prometheus.HistogramVec
	storeErrors       *prometheus.CounterVec
	reloads           *prometheus.CounterVec
	cacheHits         prometheus.Counter
	retries           *prometheus.CounterVec
	fastFailures      prometheus.Counter
	redirects         *prometheus.CounterVec
	heals             *prometheus.CounterVec
	topologyRefreshes prometheus.Counter
	reconnects        prometheus.Counter
	panics            *prometheus.CounterVec
	evictions         prometheus.Counter
}

// New returns a Metrics on a new registry holding Tollgate's metrics and the
// Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_checks_total",
			Help: "Rate-limit decisions by policy (HTTP policy, \"inline\", or Envoy rule name or domain) and result (allowed, denied, shadow_denied, error, fail_open).",
		}, []string{"policy", "result"}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_store_duration_seconds",
			Help:    "Time of each store call (consume, peek, refund, reset), the store's own retries, failures and timeouts included; local-cache hits are not store calls.",
			Buckets: storeBuckets,
		}, []string{"op"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_store_errors_total",
			Help: "Failed store calls by kind: timeout, unavailable or other.",
		}, []string{"kind"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_config_reloads_total",
			Help: "Reloads of the policy file (config=\"policies\") and Envoy configs (config=\"envoy\") by result: ok, or error (the previous version stays in force).",
		}, []string{"config", "result"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_local_cache_hits_total",
			Help: "Denials answered by the local over-limit cache without a store call.",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_redis_retries_total",
			Help: "Redis attempts that failed and were tried again, by the failed attempt's error kind.",
		}, []string{"kind"}),
		fastFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_redis_fast_failures_total",
			Help: "Redis calls refused at once because their hash slot's circuit was open.",
		}),
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_redis_redirects_total",
			Help: "Redis Cluster redirects followed, by kind: moved or ask.",
		}, []string{"kind"}),
		heals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_redis_heals_total",
			Help: "Redis clients rebuilt after persistent trouble (redirect loops, persistent errors), by reason.",
		}, []string{"reason"}),
		topologyRefreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_redis_topology_refreshes_total",
			Help: "Refreshes of the Redis Cluster slot map.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_redis_reconnects_total",
			Help: "Connections to Redis nodes re-established after they were lost.",
		}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_panics_total",
			Help: "Panics recovered in an HTTP handler or a gRPC interceptor or handler, by server (http, grpc); the request got an internal error and the process kept serving.",
		}, []string{"server"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_memory_evictions_total",
			Help: "Keys with live usage that the memory store (or the fail_local fallback) forgot because it was at its key cap; their usage is under-counted from then on.",
		}),
	}
	m.reg.MustRegister( // fixed, distinct descriptors: cannot fail
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.checks, m.storeDuration, m.storeErrors, m.reloads, m.cacheHits,
		m.retries, m.fastFailures, m.redirects, m.heals, m.topologyRefreshes, m.reconnects,
		m.panics, m.evictions,
	)
	// Series whose label values are known up front start at 0, so that
	// rate() and alerts see them before the first event.
	for _, kind := range []string{StoreTimeout, StoreUnavailable, StoreOther} {
		m.storeErrors.WithLabelValues(kind)
	}
	for _, kind := range []string{RedirectMoved, RedirectAsk} {
		m.redirects.WithLabelValues(kind)
	}
	for _, server := range []string{observe.ServerHTTP, observe.ServerGRPC} {
		m.panics.WithLabelValues(server)
	}
	return m
}

// Registry returns the registry, to register more collectors on or to
// gather from in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it), to at most a few scrapes at a
// time.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapesInFlight,
		EnableOpenMetrics:   true,
	})
}

// Check implements Observer.
func (m *Metrics) Check(policy, result string) {
	if m == nil {
		return
	}
	m.checks.WithLabelValues(policy, result).Inc()
}

// StoreCall implements Observer.
func (m *Metrics) StoreCall(op string, took time.Duration, errKind string) {
	if m == nil {
		return
	}
	m.storeDuration.WithLabelValues(op).Observe(took.Seconds())
	if errKind != "" {
		m.storeErrors.WithLabelValues(errKind).Inc()
	}
}

// ConfigReload implements Observer.
func (m *Metrics) ConfigReload(config string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reloads.WithLabelValues(config, result).Inc()
}

// CacheHit implements Observer.
func (m *Metrics) CacheHit() {
	if m == nil {
		return
	}
	m.cacheHits.Inc()
}

// Retry implements Observer.
func (m *Metrics) Retry(kind string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(kind).Inc()
}

// FastFail implements Observer.
func (m *Metrics) FastFail() {
	if m == nil {
		return
	}
	m.fastFailures.Inc()
}

// Heal implements Observer.
func (m *Metrics) Heal(reason string) {
	if m == nil {
		return
	}
	m.heals.WithLabelValues(reason).Inc()
}

// Redirect implements Observer.
func (m *Metrics) Redirect(kind string) {
	if m == nil {
		return
	}
	m.redirects.WithLabelValues(kind).Inc()
}

// TopologyRefresh implements Observer.
func (m *Metrics) TopologyRefresh() {
	if m == nil {
		return
	}
	m.topologyRefreshes.Inc()
}

// Reconnect implements Observer.
func (m *Metrics) Reconnect() {
	if m == nil {
		return
	}
	m.reconnects.Inc()
}

// Panic implements observe.PanicObserver.
func (m *Metrics) Panic(server string) {
	if m == nil {
		return
	}
	m.panics.WithLabelValues(server).Inc()
}

// Evicted implements memory.Observer: n keys with live usage forgotten at
// the memory store's key cap.
func (m *Metrics) Evicted(n int) {
	if m == nil {
		return
	}
	m.evictions.Add(float64(n))
}
