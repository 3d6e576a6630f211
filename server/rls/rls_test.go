package rls

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlspb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// callTimeout bounds every RPC in these tests.
const callTimeout = 5 * time.Second

const rules = `
domain: test
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: user
    value: vip
    rate_limit: {unit: minute, requests_per_unit: 5, name: vip}
  - key: route
    value: /api
    descriptors:
      - key: method
        value: POST
        rate_limit: {unit: second, requests_per_unit: 1}
      - key: method
        rate_limit: {window: 90s, requests_per_unit: 3}
  - key: free
    rate_limit: {unlimited: true}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: blocked
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: cost
    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: gcra}
  - key: tenant
    rate_limit: {unit: minute, requests_per_unit: 1, name: per-tenant}
  - key: tenant-override
    rate_limit: {unit: minute, requests_per_unit: 100, replaces: [{name: per-tenant}]}
  - key: fast
    rate_limit: {window: 250ms, requests_per_unit: 1}
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: {unit: day, requests_per_unit: 1}
`

type env struct {
	conn   *grpc.ClientConn
	client rlspb.RateLimitServiceClient
	clock  *fakeclock.Clock
}

// start serves a Server with rules (nil: none) over store (nil: a memory
// store) on a loopback port and connects a client; all stop at cleanup.
func start(t *testing.T, rules Rules, store tollgate.Store, opts Options) *env {
	t.Helper()
	clk := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	if store == nil {
		m := memory.New(memory.Options{})
		t.Cleanup(func() { m.Close() })
		store = m
	}
	lim := tollgate.New(store, tollgate.Options{Now: clk.Now})
	g := grpc.NewServer()
	New(lim, rules, opts).Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	t.Cleanup(func() {
		g.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{conn: conn, client: rlspb.NewRateLimitServiceClient(conn), clock: clk}
}

func parseRules(t *testing.T, yaml string) *config.EnvoyConfig {
	t.Helper()
	c, err := config.ParseEnvoy([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// d builds a descriptor from "key=value" entries.
func d(kvs ...string) *rlv3.RateLimitDescriptor {
	desc := &rlv3.RateLimitDescriptor{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		desc.Entries = append(desc.Entries, &rlv3.RateLimitDescriptor_Entry{Key: k, Value: v})
	}
	return desc
}

// withHits sets a descriptor's own hits_addend.
func withHits(desc *rlv3.RateLimitDescriptor, n uint64) *rlv3.RateLimitDescriptor {
	desc.HitsAddend = wrapperspb.UInt64(n)
	return desc
}

func (e *env) call(t *testing.T, req *rlspb.RateLimitRequest) (*rlspb.RateLimitResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return e.client.ShouldRateLimit(ctx, req)
}

// check sends one request to domain "test" and returns its overall code and
// statuses in the compact form of show.
func (e *env) check(t *testing.T, hitsAddend uint32, ds ...*rlv3.RateLimitDescriptor) (string, []string) {
	t.Helper()
	resp, err := e.call(t, &rlspb.RateLimitRequest{Domain: "test", Descriptors: ds, HitsAddend: hitsAddend})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	var got []string
	for _, st := range resp.GetStatuses() {
		got = append(got, show(st))
	}
	return resp.GetOverallCode().String(), got
}

// show formats a status as "CODE remaining=N limit=N/UNIT[xM] name reset=Ns".
func show(st *rlspb.RateLimitResponse_DescriptorStatus) string {
	s := fmt.Sprintf("%s remaining=%d", st.GetCode(), st.GetLimitRemaining())
	if l := st.GetCurrentLimit(); l != nil {
		s += fmt.Sprintf(" limit=%d/%s", l.GetRequestsPerUnit(), l.GetUnit())
		if m := l.GetUnitMultiplier(); m != nil {
			s += fmt.Sprintf("x%d", m.GetValue())
		}
		if l.GetName() != "" {
			s += " " + l.GetName()
		}
	}
	if r := st.GetDurationUntilReset(); r != nil {
		s += fmt.Sprintf(" reset=%ds", r.GetSeconds())
		if r.GetNanos() != 0 {
			s += fmt.Sprintf("+%dns", r.GetNanos())
		}
	}
	return s
}

// expect checks one single-descriptor request.
func (e *env) expect(t *testing.T, hitsAddend uint32, desc *rlv3.RateLimitDescriptor, wantOverall, wantStatus string) {
	t.Helper()
	overall, statuses := e.check(t, hitsAddend, desc)
	if overall != wantOverall || len(statuses) != 1 || statuses[0] != wantStatus {
		t.Errorf("%v: got %s %q\nwant %s [%q]", desc.GetEntries(), overall, statuses, wantOverall, wantStatus)
	}
}

const (
	ok   = "OK"
	over = "OVER_LIMIT"
)

func TestAllowedThenOverLimit(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	e.expect(t, 0, d("user=alice"), ok, "OK remaining=1 limit=2/MINUTE reset=60s")
	e.clock.Advance(10 * time.Second)
	e.expect(t, 0, d("user=alice"), ok, "OK remaining=0 limit=2/MINUTE reset=60s")
	e.expect(t, 0, d("user=alice"), over, "OVER_LIMIT remaining=0 limit=2/MINUTE reset=60s")
	e.expect(t, 0, d("user=bob"), ok, "OK remaining=1 limit=2/MINUTE reset=60s") // per value
	// The sliding log frees alice's first request 60s after it was made.
	e.clock.Advance(50 * time.Second)
	e.expect(t, 0, d("user=alice"), ok, "OK remaining=0 limit=2/MINUTE reset=60s")
	e.expect(t, 0, d("user=alice"), over, "OVER_LIMIT remaining=0 limit=2/MINUTE reset=60s")
}

func TestSpecificValueWinsOverWildcard(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	e.expect(t, 0, d("user=vip"), ok, "OK remaining=4 limit=5/MINUTE vip reset=60s")
	e.expect(t, 0, d("user=vipx"), ok, "OK remaining=1 limit=2/MINUTE reset=60s")
}

func TestNestedDescriptors(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	e.expect(t, 0, d("route=/api", "method=POST"), ok, "OK remaining=0 limit=1/SECOND reset=1s")
	e.expect(t, 0, d("route=/api", "method=POST"), over, "OVER_LIMIT remaining=0 limit=1/SECOND reset=1s")
	e.expect(t, 0, d("route=/api", "method=GET"), ok, "OK remaining=2 limit=3/SECONDx90 reset=90s")
	e.expect(t, 0, d("route=/api", "method=PUT"), ok, "OK remaining=2 limit=3/SECONDx90 reset=90s")
	// No rule: the path stops short, goes on too long, or does not exist.
	e.expect(t, 0, d("route=/api"), ok, "OK remaining=0")
	e.expect(t, 0, d("route=/api", "method=POST", "extra=1"), ok, "OK remaining=0")
	e.expect(t, 0, d("route=/other", "method=POST"), ok, "OK remaining=0")
	e.expect(t, 0, d(), ok, "OK remaining=0")
	e.clock.Advance(time.Second)
	e.expect(t, 0, d("route=/api", "method=POST"), ok, "OK remaining=0 limit=1/SECOND reset=1s")
}

func TestShareThreshold(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	e.expect(t, 0, d("files=files/a.pdf"), ok, "OK remaining=0 limit=1/DAY reset=86400s")
	e.expect(t, 0, d("files=files/b.csv"), over, "OVER_LIMIT remaining=0 limit=1/DAY reset=86400s")
}

func TestUnlimited(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	for range 3 {
		e.expect(t, 0, d("free=x"), ok, fmt.Sprintf("OK remaining=%d", uint32(math.MaxUint32)))
	}
}

func TestShadowModeNeverDenies(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	e.expect(t, 0, d("shadow=x"), ok, "OK remaining=0 limit=1/HOUR reset=3600s")
	// Over the limit: reported OK, as envoyproxy/ratelimit does.
	e.expect(t, 0, d("shadow=x"), ok, "OK remaining=0 limit=1/HOUR reset=3600s")
	overall, statuses := e.check(t, 0, d("shadow=x"), d("user=dave"))
	if overall != ok || statuses[0] != "OK remaining=0 limit=1/HOUR reset=3600s" {
		t.Errorf("shadow with another descriptor: %s %q", overall, statuses)
	}
}

func TestHitsAddendIsTheCost(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	// GCRA 10/min: a cost of 4 drains in 24s.
	e.expect(t, 4, d("cost=x"), ok, "OK remaining=6 limit=10/MINUTE reset=24s")
	e.expect(t, 7, d("cost=x"), over, "OVER_LIMIT remaining=6 limit=10/MINUTE reset=24s")
	// A descriptor's own hits_addend wins over the request's; 0 only looks.
	e.expect(t, 4, withHits(d("cost=x"), 0), ok, "OK remaining=6 limit=10/MINUTE reset=24s")
	e.expect(t, 0, withHits(d("cost=x"), 2), ok, "OK remaining=4 limit=10/MINUTE reset=36s")
	// More hits than the limit can never fit: OVER_LIMIT, nothing charged.
	e.expect(t, 11, d("cost=x"), over, "OVER_LIMIT remaining=4 limit=10/MINUTE reset=36s")
	e.expect(t, 0, withHits(d("cost=x"), math.MaxUint64), over, "OVER_LIMIT remaining=4 limit=10/MINUTE reset=36s")
	e.expect(t, 4, d("cost=x"), ok, "OK remaining=0 limit=10/MINUTE reset=60s")
	// The request's hits_addend applies to every descriptor without its own.
	overall, statuses := e.check(t, 2, d("user=erin"), withHits(d("user=frank"), 1))
	want := []string{"OK remaining=0 limit=2/MINUTE reset=60s", "OK remaining=1 limit=2/MINUTE reset=60s"}
	if overall != ok || !slices.Equal(statuses, want) {
		t.Errorf("got %s %q, want OK %q", overall, statuses, want)
	}
}

func TestOneDescriptorOverLimitDeniesTheRequest(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	e.check(t, 2, d("user=carol"))
	overall, statuses := e.check(t, 0, d("free=x"), d("user=carol"), d("route=/api", "method=POST"), d("nothing=here"))
	want := []string{
		fmt.Sprintf("OK remaining=%d", uint32(math.MaxUint32)),
		"OVER_LIMIT remaining=0 limit=2/MINUTE reset=60s",
		"OK remaining=0 limit=1/SECOND reset=1s", // still charged, as in envoyproxy/ratelimit
		"OK remaining=0",
	}
	if overall != over || !slices.Equal(statuses, want) {
		t.Errorf("got %s %q\nwant OVER_LIMIT %q", overall, statuses, want)
	}
}

// A rule with stop_charging_when_over keeps no hits of a request that
// another descriptor puts over its limit, wherever the other comes: the
// descriptors are checked concurrently, so its hits are charged and then
// refunded (its status shows the charge).
func TestStopChargingWhenOver(t *testing.T) {
	e := start(t, parseRules(t, `
domain: test
descriptors:
  - key: account
    rate_limit: {unit: hour, requests_per_unit: 10, stop_charging_when_over: true}
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: plain
    rate_limit: {unit: hour, requests_per_unit: 10}
`), nil, Options{})
	// Allowed: both charged.
	if overall, _ := e.check(t, 0, d("account=a"), d("user=u"), d("plain=p")); overall != ok {
		t.Fatalf("first request: %s", overall)
	}
	// The user is over: the account's hit is given back (it came first),
	// the plain rule's is kept, as in envoyproxy/ratelimit without the
	// option.
	overall, statuses := e.check(t, 0, d("account=a"), d("user=u"), d("plain=p"))
	if overall != over || statuses[0] != "OK remaining=8 limit=10/HOUR reset=3600s" {
		t.Fatalf("second request: %s %q", overall, statuses)
	}
	// The user is over first: the account is charged and refunded too.
	overall, statuses = e.check(t, 0, d("user=u"), d("account=a"))
	if overall != over || statuses[1] != "OK remaining=8 limit=10/HOUR reset=3600s" {
		t.Fatalf("third request: %s %q", overall, statuses)
	}
	// Only the first request's hit stayed on the account; the plain rule
	// kept both of its own.
	_, statuses = e.check(t, 0, d("account=a"), d("plain=p"))
	if want := []string{"OK remaining=8 limit=10/HOUR reset=3600s", "OK remaining=7 limit=10/HOUR reset=3600s"}; !slices.Equal(statuses, want) {
		t.Errorf("after: %q, want %q", statuses, want)
	}
}

func TestReplaces(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	// Alone, the per-tenant rule applies.
	e.expect(t, 0, d("tenant=t1"), ok, "OK remaining=0 limit=1/MINUTE per-tenant reset=60s")
	e.expect(t, 0, d("tenant=t1"), over, "OVER_LIMIT remaining=0 limit=1/MINUTE per-tenant reset=60s")
	// With the override in the same request, it is not checked.
	overall, statuses := e.check(t, 0, d("tenant=t1"), d("tenant-override=t1"))
	want := []string{"OK remaining=0", "OK remaining=99 limit=100/MINUTE reset=60s"}
	if overall != ok || !slices.Equal(statuses, want) {
		t.Errorf("got %s %q, want OK %q", overall, statuses, want)
	}
}

func TestZeroRequestsPerUnitDeniesAll(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	e.expect(t, 0, d("blocked=x"), over, "OVER_LIMIT remaining=0 limit=0/SECOND reset=1s")
}

func TestSubSecondWindow(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	e.expect(t, 0, d("fast=x"), ok, "OK remaining=0 limit=1/UNKNOWN reset=1s")
}

func TestUnknownDomainOrNoRules(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	resp, err := e.call(t, &rlspb.RateLimitRequest{Domain: "other", Descriptors: []*rlv3.RateLimitDescriptor{d("user=alice")}})
	if err != nil || resp.GetOverallCode() != rlspb.RateLimitResponse_OK || show(resp.GetStatuses()[0]) != "OK remaining=0" {
		t.Errorf("unknown domain: %v, %v", resp, err)
	}
	e = start(t, nil, nil, Options{})
	overall, statuses := e.check(t, 0, d("user=alice"))
	if overall != ok || !slices.Equal(statuses, []string{"OK remaining=0"}) {
		t.Errorf("nil rules: %s %q", overall, statuses)
	}
}

func TestInvalidRequest(t *testing.T) {
	e := start(t, parseRules(t, rules), nil, Options{})
	for _, req := range []*rlspb.RateLimitRequest{
		{},
		{Descriptors: []*rlv3.RateLimitDescriptor{d("user=alice")}},
		{Domain: "test"},
		{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{}},
	} {
		_, err := e.call(t, req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: error %v, want InvalidArgument", req, err)
		}
	}
}

// failingStore is a store that is always unavailable.
type failingStore struct{}

func (failingStore) Do(context.Context, tollgate.Request) (tollgate.Decision, error) {
	return tollgate.Decision{}, fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)
}

func (failingStore) Reset(context.Context, string) error {
	return fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)
}

func TestStoreFailure(t *testing.T) {
	e := start(t, parseRules(t, rules), failingStore{}, Options{})
	_, err := e.call(t, &rlspb.RateLimitRequest{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{d("user=alice")}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("fail closed: error %v, want Unavailable", err)
	}
	// Descriptors that need no store still answer.
	e.expect(t, 0, d("free=x"), ok, fmt.Sprintf("OK remaining=%d", uint32(math.MaxUint32)))

	e = start(t, parseRules(t, rules), failingStore{}, Options{FailureMode: policy.FailOpen})
	overall, statuses := e.check(t, 0, d("user=alice"), d("blocked=x"))
	want := []string{"OK remaining=0 limit=2/MINUTE", "OVER_LIMIT remaining=0 limit=0/SECOND reset=1s"}
	if overall != over || !slices.Equal(statuses, want) {
		t.Errorf("fail open: got %s %q, want OVER_LIMIT %q", overall, statuses, want)
	}
}

// A rule with failure_mode: fail_open fails open on its own; the others of
// the request still fail closed.
func TestRuleFailOpen(t *testing.T) {
	const rules = `
domain: test
descriptors:
  - key: open
    rate_limit: {unit: minute, requests_per_unit: 2, failure_mode: fail_open}
  - key: closed
    rate_limit: {unit: minute, requests_per_unit: 2}
`
	e := start(t, parseRules(t, rules), failingStore{}, Options{})
	overall, statuses := e.check(t, 0, d("open=x"))
	if want := []string{"OK remaining=0 limit=2/MINUTE"}; overall != ok || !slices.Equal(statuses, want) {
		t.Errorf("fail_open rule: got %s %q, want OK %q", overall, statuses, want)
	}
	_, err := e.call(t, &rlspb.RateLimitRequest{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{d("open=x"), d("closed=x")}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("fail_open and fail_closed rules: error %v, want Unavailable", err)
	}
}

// A Limiter whose MaxKeyLen is shorter than the rule keys fails with
// ErrInvalidKey: Internal, even when failing open.
func TestUnexpectedLimiterErrorIsInternal(t *testing.T) {
	m := memory.New(memory.Options{})
	defer m.Close()
	s := New(tollgate.New(m, tollgate.Options{MaxKeyLen: 3}), parseRules(t, rules), Options{FailureMode: policy.FailOpen})
	_, err := s.ShouldRateLimit(context.Background(), &rlspb.RateLimitRequest{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{d("user=alice")}})
	if status.Code(err) != codes.Internal {
		t.Errorf("error %v, want Internal", err)
	}
}

func TestCanceledContext(t *testing.T) {
	s := New(tollgate.New(blockingStore{}, tollgate.Options{}), parseRules(t, rules), Options{FailureMode: policy.FailOpen})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.ShouldRateLimit(ctx, &rlspb.RateLimitRequest{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{d("user=alice")}})
	if status.Code(err) != codes.Canceled {
		t.Errorf("error %v, want Canceled even when failing open", err)
	}
}

// blockingStore answers only when the context is done.
type blockingStore struct{}

func (blockingStore) Do(ctx context.Context, _ tollgate.Request) (tollgate.Decision, error) {
	<-ctx.Done()
	return tollgate.Decision{}, ctx.Err()
}

func (blockingStore) Reset(ctx context.Context, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

// Malformed in-process requests (nil entries, nil descriptors) must not panic.
func TestNilFieldsDoNotPanic(t *testing.T) {
	m := memory.New(memory.Options{})
	defer m.Close()
	s := New(tollgate.New(m, tollgate.Options{}), parseRules(t, rules), Options{})
	resp, err := s.ShouldRateLimit(context.Background(), &rlspb.RateLimitRequest{
		Domain:      "test",
		Descriptors: []*rlv3.RateLimitDescriptor{nil, {Entries: []*rlv3.RateLimitDescriptor_Entry{nil}}},
	})
	if err != nil || len(resp.GetStatuses()) != 2 {
		t.Fatalf("got %v, %v", resp, err)
	}
	if _, err := s.ShouldRateLimit(context.Background(), nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("nil request: %v", err)
	}
}

func TestHotReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(units int) {
		yaml := fmt.Sprintf("domain: test\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: %d}\n", units)
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	h, err := config.NewEnvoyHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, h, nil, Options{})
	e.expect(t, 0, d("user=alice"), ok, "OK remaining=0 limit=1/MINUTE reset=60s")
	e.expect(t, 0, d("user=alice"), over, "OVER_LIMIT remaining=0 limit=1/MINUTE reset=60s")
	write(3)
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	e.expect(t, 0, d("user=alice"), ok, "OK remaining=1 limit=3/MINUTE reset=60s") // same counter, new limit
}

func TestHealthAndReflection(t *testing.T) {
	off := start(t, nil, nil, Options{})
	ctxOff, cancelOff := context.WithTimeout(context.Background(), callTimeout)
	defer cancelOff()
	if stream, err := reflectionpb.NewServerReflectionClient(off.conn).ServerReflectionInfo(ctxOff); err == nil {
		_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		if _, err := stream.Recv(); status.Code(err) != codes.Unimplemented {
			t.Errorf("reflection without Options.Reflection: %v, want Unimplemented", err)
		}
	}

	e := start(t, nil, nil, Options{Reflection: true})
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	hc := healthpb.NewHealthClient(e.conn)
	for _, svc := range []string{"", "envoy.service.ratelimit.v3.RateLimitService"} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v, %v", svc, resp, err)
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"envoy.service.ratelimit.v3.RateLimitService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, not %s", names, want)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

func TestUnitOf(t *testing.T) {
	for _, tc := range []struct {
		w    time.Duration
		want string
	}{
		{time.Second, "SECOND"},
		{90 * time.Second, "SECONDx90"},
		{time.Minute, "MINUTE"},
		{10 * time.Minute, "MINUTEx10"},
		{time.Hour, "HOUR"},
		{36 * time.Hour, "HOURx36"},
		{24 * time.Hour, "DAY"},
		{7 * 24 * time.Hour, "WEEK"},
		{14 * 24 * time.Hour, "WEEKx2"},
		{29 * 24 * time.Hour, "DAYx29"},
		{30 * 24 * time.Hour, "MONTH"},
		{1500 * time.Millisecond, "UNKNOWN"},
		{time.Millisecond, "UNKNOWN"},
	} {
		u, m := unitOf(tc.w)
		got := u.String()
		if m != nil {
			got += fmt.Sprintf("x%d", m.GetValue())
		}
		if got != tc.want {
			t.Errorf("unitOf(%s) = %s, want %s", tc.w, got, tc.want)
		}
	}
}
