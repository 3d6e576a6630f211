package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/memory"
)

func TestSlot(t *testing.T) {
	for key, want := range map[string]int{
		// CLUSTER KEYSLOT on redis-server 7.0.
		"":                     0,
		"123456789":            12739, // CRC16/XMODEM check value 0x31C3
		"foo":                  12182,
		"bar":                  5061,
		"user1000":             3443,
		"{user1000}.following": 3443,
		"a{user1000}b{x}":      3443,
		"{}user1000":           7326, // empty tag: the whole key
		"tg:{foo}:l":           12182,
		"foo{":                 7673,
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if Slot("{}user1000") == Slot("user1000") {
		t.Error("an empty hash tag was used")
	}
}

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("%w: %w", tollgate.ErrUnavailable, err) }
	for _, c := range []struct {
		err  error
		want Kind
	}{
		{nil, OK},
		{wrap(context.DeadlineExceeded), Timeout},
		{wrap(os.ErrDeadlineExceeded), Timeout},
		{wrap(&net.OpError{Op: "read", Err: timeoutErr{}}), Timeout},
		{wrap(errors.New("MOVED 3999 127.0.0.12:15000")), Moved},
		{wrap(errors.New("ASK 3999 127.0.0.12:15000")), Ask},
		{wrap(errors.New("TRYAGAIN Multiple keys request during rehashing of slot")), TryAgain},
		{wrap(errors.New("CLUSTERDOWN The cluster is down")), ClusterDown},
		{wrap(errors.New("LOADING Redis is loading the dataset in memory")), Loading},
		{wrap(errors.New("READONLY You can't write against a read only replica.")), ReadOnly},
		{wrap(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), Refused},
		{wrap(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), Reset},
		{wrap(io.EOF), Reset},
		{wrap(errors.New("rueidis client is closing or unable to connect redis")), Reset},
		{wrap(errors.New("redis: circuit open: this hash slot's node keeps failing")), CircuitOpen},
		{wrap(errors.New("ERR something else")), Other},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if Kind(200).String() != "unknown" {
		t.Error("Kind(200).String()")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// faultyStore is a memory store that fails calls on some slots while told
// to, and can lose a key's state, standing in for a cluster.
type faultyStore struct {
	*memory.Store
	mu      sync.Mutex
	failing map[int]error // slot → error returned
	calls   atomic.Int64
}

func (s *faultyStore) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	s.calls.Add(1)
	s.mu.Lock()
	// The Limiters' keys: the load's keys in the default namespace.
	err := s.failing[Slot(strings.TrimPrefix(req.Key, tollgate.StoreKey("", "")))]
	s.mu.Unlock()
	if err != nil {
		return tollgate.Decision{}, err
	}
	return s.Store.Do(ctx, req)
}

func (s *faultyStore) fail(slots []int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = map[int]error{}
	for _, sl := range slots {
		s.failing[sl] = err
	}
}

// TestLoad runs a load on a memory store that fails some slots for a while,
// and checks the records, the recovery and outage figures, the accounting
// and the report.
func TestLoad(t *testing.T) {
	mem := memory.New(memory.Options{})
	defer mem.Close()
	st := &faultyStore{Store: mem}
	lims := []*tollgate.Limiter{tollgate.New(st, tollgate.Options{}), tollgate.New(st, tollgate.Options{})}
	l, err := Start(t.Context(), Config{Limiters: lims, Slot: Slot, Rate: 1000}, KeySpec{Prefix: "a:", Cold: 100, Hot: 2, Pin: []int{42}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	slots := l.Slots()
	if !slices.Contains(slots, 42) || len(l.Keys(42)) < PinKeys {
		t.Fatalf("pinned slot 42 missing: %v, keys %v", slots, l.Keys(42))
	}
	time.Sleep(300 * time.Millisecond)
	bad := slots[:10]
	at := l.Mark("fault", "")
	st.fail(bad, errors.New("MOVED 1 127.0.0.1:1"))
	time.Sleep(400 * time.Millisecond)
	if d, missing := l.Recovery(at, slots); len(missing) < len(bad) || d > 300*time.Millisecond {
		t.Errorf("during the fault: recovery %v, missing %v; want the %d failing slots missing", d, missing, len(bad))
	}
	healed := l.Mark("healed", "")
	st.fail(nil, nil)
	deadline := time.Now().Add(3 * time.Second)
	for {
		d, missing := l.Recovery(healed, slots)
		if len(missing) == 0 {
			// 100 cold keys at 900 calls per second: each every ~0.11 s.
			if d > time.Second {
				t.Errorf("recovery %v after healing", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots %v never recovered", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d, _ := l.Recovery(at, slots)
	if d < 400*time.Millisecond {
		t.Errorf("recovery from the fault %v, want at least the 400ms it lasted", d)
	}
	outages := l.Outages(at, time.Now())
	var failed []int
	for _, o := range outages {
		if o.Open || o.Last != Moved || o.Duration() > time.Second {
			t.Errorf("outage %+v", o)
		}
		if !slices.Contains(failed, o.Slot) {
			failed = append(failed, o.Slot)
		}
	}
	slices.Sort(failed)
	if !slices.Equal(failed, bad) {
		t.Errorf("outage slots %v, want %v", failed, bad)
	}
	if s := Stuck(outages, at, 100*time.Millisecond); !slices.Equal(s, bad) {
		t.Errorf("stuck for 100ms: %v, want %v", s, bad)
	}
	if s := Stuck(outages, healed, 500*time.Millisecond); len(s) != 0 {
		t.Errorf("stuck after healing: %v", s)
	}
	w := l.Window(at, healed)
	if w.Errors["moved"] == 0 || w.OK == 0 || w.Calls != w.OK+w.Errors["moved"] {
		t.Errorf("window counts %+v", w)
	}

	// Idle: no call while paused.
	l.Pause()
	before := st.calls.Load()
	time.Sleep(100 * time.Millisecond)
	if n := st.calls.Load(); n != before {
		t.Errorf("%d calls while paused", n-before)
	}
	resumed := l.Resume()
	time.Sleep(300 * time.Millisecond)

	// A second key set; the first keeps its accounting.
	if _, err := l.UseKeys(KeySpec{Prefix: "a:"}); err == nil {
		t.Error("UseKeys accepted a prefix twice")
	}
	if _, err := l.UseKeys(KeySpec{Prefix: "b:", Cold: 50}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	l.Stop()
	if l.Exhausted() != "" {
		t.Errorf("exhausted: %s", l.Exhausted())
	}
	if c := l.Window(resumed, resumed.Add(250*time.Millisecond)); c.Calls < 100 {
		t.Errorf("after Resume: %+v", c)
	}

	// Lose the state of one key: Check must see it.
	lost := "a:h0"
	if err := lims[0].Reset(t.Context(), lost); err != nil {
		t.Fatal(err)
	}
	acc, err := l.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(acc) != 2 || acc[0].KeySet != "a:" || acc[1].KeySet != "b:" || acc[1].Keys != 50+DefaultHotKeys {
		t.Fatalf("accounting %+v", acc)
	}
	a := acc[0]
	if a.Lost == 0 || a.LostKeys != 1 || a.OverLimit != 0 || a.Unexplained != 0 || a.Acked == 0 || a.Errored == 0 {
		t.Errorf("key set a: %+v; want one lost key, nothing over", a)
	}
	if b := acc[1]; b.Lost != 0 || b.Used != b.Acked || b.Errored != 0 {
		t.Errorf("key set b: %+v; want used = acked", b)
	}

	r := l.Report("unit")
	r.Accounting = acc
	if r.Totals.Calls != r.Launched || r.Totals.Errors["moved"] == 0 || len(r.Samples["moved"]) != 1 || len(r.Markers) < 5 {
		t.Errorf("report: totals %+v launched %d samples %v markers %v", r.Totals, r.Launched, r.Samples, r.Markers)
	}
	p, err := r.Write(t.TempDir())
	if err != nil || filepath.Base(p) != "unit.json" {
		t.Fatalf("Write: %s, %v", p, err)
	}
	if FormatTimeline(l.Timeline(at, healed)) == "" {
		t.Error("empty timeline")
	}
}

// TestBounds checks that the load stops at MaxOps and MaxDuration and that
// the concurrency bound skips calls instead of queueing them.
func TestBounds(t *testing.T) {
	slow := storeFunc(func(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
		<-ctx.Done()
		return tollgate.Decision{}, ctx.Err()
	})
	lims := []*tollgate.Limiter{tollgate.New(slow, tollgate.Options{})}
	l, err := Start(t.Context(), Config{Limiters: lims, Slot: Slot, Rate: 2000, Concurrency: 5, OpTimeout: 50 * time.Millisecond, MaxOps: 40}, KeySpec{Prefix: "x:", Cold: 10})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Exhausted() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	l.Stop()
	r := l.Report("bounds")
	skipped := 0
	for _, b := range r.Timeline {
		skipped += b.Skipped
	}
	if r.Exhausted != "MaxOps reached" || r.Launched != 40 || r.Skipped == 0 || skipped != r.Skipped || r.Totals.Errors["timeout"] != 40 || r.Totals.Overran != 0 {
		t.Errorf("report %+v", r)
	}

	// The slot bound: every key in slot 7, at most one call in flight.
	seven := func(string) int { return 7 }
	l, err = Start(t.Context(), Config{Limiters: lims, Slot: seven, Rate: 1000, SlotConcurrency: 1, OpTimeout: 100 * time.Millisecond}, KeySpec{Prefix: "s:", Cold: 10})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := l.bySlot[7].Load(); n != 1 {
		t.Errorf("%d calls in flight on slot 7, want 1", n)
	}
	l.Stop()
	if r := l.Report("slot"); r.Launched > 2 || r.Skipped < 20 {
		t.Errorf("slot bound: %d launched, %d skipped", r.Launched, r.Skipped)
	}

	// A store that ignores the deadline: its calls overrun it.
	deaf := storeFunc(func(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
		time.Sleep(150 * time.Millisecond)
		return tollgate.Decision{}, errors.New("late")
	})
	l, err = Start(t.Context(), Config{Limiters: []*tollgate.Limiter{tollgate.New(deaf, tollgate.Options{})}, Slot: Slot, Rate: 100, OpTimeout: 20 * time.Millisecond, MaxOps: 5}, KeySpec{Prefix: "d:", Cold: 10})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	l.Stop()
	if r := l.Report("deaf"); r.Totals.Overran != 5 || r.Totals.MaxLatencyMS < 150 || r.Totals.Errors["other"] != 5 {
		t.Errorf("deaf store: totals %+v", r.Totals)
	}

	l, err = Start(t.Context(), Config{Limiters: lims, Slot: Slot, Rate: 10, MaxDuration: 100 * time.Millisecond}, KeySpec{Prefix: "y:", Cold: 10})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := l.Exhausted(); got != "MaxDuration reached" {
		t.Errorf("after MaxDuration: %q", got)
	}
	l.Stop()

	for name, c := range map[string]Config{
		"no limiter": {Slot: Slot},
		"no slot":    {Limiters: lims},
		"cost":       {Limiters: lims, Slot: Slot, MaxCost: 51},
		"negative":   {Limiters: lims, Slot: Slot, Rate: -1},
	} {
		if l, err := Start(t.Context(), c, KeySpec{Prefix: "z:"}); err == nil {
			l.Stop()
			t.Errorf("%s: Start accepted %+v", name, c)
		}
	}
}

type storeFunc func(ctx context.Context, req tollgate.Request) (tollgate.Decision, error)

func (f storeFunc) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	return f(ctx, req)
}
func (storeFunc) Reset(context.Context, string) error { return nil }
