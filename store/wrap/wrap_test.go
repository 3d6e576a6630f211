package wrap_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/overlimit"
	"github.com/tollgate/tollgate/store/wrap"
)

// calls records what an Observer is told.
type calls struct {
	mu  sync.Mutex
	got []string
}

func (c *calls) StoreCall(op string, took time.Duration, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, op+"/"+kind)
}

// hanging answers only when its context ends.
type hanging struct{}

func (hanging) Do(ctx context.Context, _ tollgate.Request) (tollgate.Decision, error) {
	<-ctx.Done()
	return tollgate.Decision{}, ctx.Err()
}
func (hanging) Reset(ctx context.Context, _ string) error { <-ctx.Done(); return ctx.Err() }

// The chain: a repeated denial is answered by the cache (not observed), a
// store call is observed, and a hanging store ends at the timeout, observed
// with the classifier's kind.
func TestChain(t *testing.T) {
	mem := memory.New(memory.Options{})
	defer mem.Close()
	obs := &calls{}
	kind := func(err error) string {
		if errors.Is(err, context.DeadlineExceeded) {
			return "timeout"
		}
		return "other"
	}
	lim := tollgate.New(wrap.Chain(mem, wrap.Options{Timeout: time.Second, Observer: obs, Kind: kind, Cache: &overlimit.Options{}}), tollgate.Options{})
	ctx := context.Background()
	limit := tollgate.PerHour(1)
	for range 3 {
		if _, err := lim.Consume(ctx, "k", 1, limit); err != nil {
			t.Fatal(err)
		}
	}
	// allowed, denied (remembered), denied by the cache
	if got := obs.got; len(got) != 2 || got[0] != "consume/" || got[1] != "consume/" {
		t.Errorf("observed %q, want two store calls", got)
	}

	obs.got = nil
	slow := tollgate.New(wrap.Chain(hanging{}, wrap.Options{Timeout: 20 * time.Millisecond, Observer: obs, Kind: kind}), tollgate.Options{})
	start := time.Now()
	_, err := slow.Consume(ctx, "k", 1, limit)
	if !errors.Is(err, tollgate.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging store: %v, want ErrUnavailable wrapping the deadline", err)
	}
	if time.Since(start) > 10*time.Second { // a bound on the test, not a timing
		t.Error("the deadline did not end the call")
	}
	if err := slow.Reset(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("reset: %v", err)
	}
	if got := obs.got; len(got) != 2 || got[0] != "consume/timeout" || got[1] != "reset/timeout" {
		t.Errorf("observed %q", got)
	}

	// A caller that went away is not reported.
	obs.got = nil
	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = slow.Consume(gone, "k", 1, limit)
	if len(obs.got) != 0 {
		t.Errorf("a canceled call was observed: %q", obs.got)
	}
	// The zero Options wrap nothing.
	if wrap.Chain(mem, wrap.Options{}) != tollgate.Store(mem) {
		t.Error("zero Options wrapped the store")
	}
}
