package harness

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/chaos"
	"github.com/tollgate/tollgate/internal/testcluster"
)

// A sweep is what a service sees when its first requests arrive after a
// fault it slept through: one consume on each of SweepKeys keys spread over
// all hash slots, one after another, each within SweepTimeout (the
// service's default --check-timeout). Every one must succeed.
const (
	SweepKeys    = 200
	SweepTimeout = 100 * time.Millisecond
)

// sweepResult is what a sweep saw.
type sweepResult struct {
	counts chaos.Counts
	took   time.Duration
	first  string // first error, with its key's slot
}

// sweep consumes once on each of SweepKeys fresh keys, key i in the i-th
// of SweepKeys equal ranges of slots, through the first client.
func (s *Scenario) sweep(tag string) sweepResult {
	st := s.stores[0]
	lim := tollgate.New(st, tollgate.Options{})
	limit := tollgate.PerHour(100)
	r := sweepResult{counts: chaos.Counts{Errors: map[string]int{}}}
	begin := time.Now()
	for i := range SweepKeys {
		lo, hi := i*16384/SweepKeys, (i+1)*16384/SweepKeys
		var key string
		for k := 0; ; k++ {
			key = fmt.Sprintf("%ssweep:%s:%d:%d", s.prefix(), tag, i, k)
			if sl := chaos.Slot(st.Key(tollgate.StoreKey("", key))); lo <= sl && sl < hi {
				break
			}
		}
		ctx, cancel := context.WithTimeout(s.ctx, SweepTimeout)
		start := time.Now()
		_, err := lim.Consume(ctx, key, 1, limit)
		cancel()
		r.counts.Calls++
		r.counts.MaxLatencyMS = max(r.counts.MaxLatencyMS, time.Since(start).Milliseconds())
		if err != nil {
			r.counts.Errors[chaos.Classify(err).String()]++
			if r.first == "" {
				r.first = fmt.Sprintf("slot %d: %v", chaos.Slot(st.Key(tollgate.StoreKey("", key))), err)
			}
			continue
		}
		r.counts.OK++
		r.counts.Allowed++
	}
	r.took = time.Since(begin)
	return r
}

// IdleFault is a fault that happens while every client is idle.
type IdleFault struct {
	Name string
	// Inject injects the fault and returns notes; nil means none: the
	// clients are only idle for Quiet.
	Inject func() ([]string, error)
	// Healthy waits until the cluster reports itself healthy; nil means
	// WaitHealthy.
	Healthy func() error
	// Quiet is how long the clients stay idle after the cluster is healthy.
	Quiet time.Duration
}

// RunIdle pauses the load, injects f, waits until the cluster is healthy
// and f.Quiet longer, then sweeps (see SweepKeys) and resumes the load. A
// sweep call that fails is a failure of the fault. The result's recovery is
// the sweep's length, counted from its start.
func (s *Scenario) RunIdle(f IdleFault) (chaos.Fault, error) {
	l := s.load
	s.steps++
	paused := l.Pause()
	defer l.Resume()
	Sleep(s.ctx, 300*time.Millisecond)
	at := l.Mark("fault", f.Name)
	var notes []string
	if f.Inject != nil {
		var err error
		if notes, err = f.Inject(); err != nil {
			return chaos.Fault{}, fmt.Errorf("%s: %w", f.Name, err)
		}
	}
	healthy, err := s.waitHealthy(f.Name, f.Healthy)
	if err != nil {
		return chaos.Fault{}, err
	}
	Sleep(s.ctx, f.Quiet)
	if err := s.ctx.Err(); err != nil {
		return chaos.Fault{}, fmt.Errorf("%s: %w", f.Name, err)
	}
	swept := l.Mark("sweep", f.Name)
	sw := s.sweep(fmt.Sprint(s.steps))
	r := chaos.Fault{
		Name:           f.Name,
		AtMS:           l.At(at).Milliseconds(),
		HealthyMS:      healthy.Sub(at).Milliseconds(),
		Idle:           true,
		ResumeMS:       l.At(swept).Milliseconds(),
		RecoveryMS:     sw.took.Milliseconds(),
		BoundMS:        (SweepKeys * SweepTimeout).Milliseconds(),
		Stuck:          []int{},
		IdleRecoveryMS: -1,
		Calls:          sw.counts,
		Notes: append(notes, fmt.Sprintf("idle %v from the pause to the sweep; sweep of %d keys over all slots: %d failed, in %v, slowest %d ms",
			swept.Sub(paused).Round(time.Millisecond), SweepKeys, sw.counts.Failed(), sw.took.Round(time.Millisecond), sw.counts.MaxLatencyMS)),
	}
	s.rep.Logf("%s: healthy after %v; sweep %v after: %d of %d failed %v, took %v, slowest %d ms",
		f.Name, healthy.Sub(at).Round(time.Millisecond), swept.Sub(healthy).Round(time.Millisecond),
		sw.counts.Failed(), sw.counts.Calls, sw.counts.Errors, sw.took.Round(time.Millisecond), sw.counts.MaxLatencyMS)
	if n := sw.counts.Failed(); n > 0 {
		msg := fmt.Sprintf("%s: %d of %d consumes failed in the sweep after the idle fault (%v); first: %s", f.Name, n, SweepKeys, sw.counts.Errors, sw.first)
		r.Failures = append(r.Failures, msg)
		s.rep.Errorf("%s", msg)
	}
	s.faults = append(s.faults, r)
	if s.opt.OnFault != nil {
		s.opt.OnFault(r, r.Failures)
	}
	return r, nil
}

// moveHosts are the loopback addresses nodes move to: 127.0.1.x, away from
// the clusters' own 127.0.0.x.
func moveHost(i int) string { return net.IPv4(127, 0, 1, byte(10+i%240)).String() }

// AddressMove moves every node to a new loopback address (MoveHost): the
// masters one after another under load, then the replicas, until no
// address the clients were given at start is alive; runs times (each run
// moves every node again). No call may fail. Then the clients idle for
// IdleFor and a sweep must not fail either, nor the sweeps after a master
// at its new address is killed while idle, and after its restart.
func AddressMove(s *Scenario, runs int) error {
	ps := s.Proxies()
	if ps == nil {
		return errNoProxies
	}
	moves := 0
	for run := range runs {
		shards, err := s.Shards()
		if err != nil {
			return err
		}
		var nodes []*testcluster.Node
		for _, sh := range shards {
			nodes = append(nodes, sh.Master)
		}
		for _, sh := range shards {
			nodes = append(nodes, sh.Replicas...)
		}
		for _, n := range nodes {
			host := moveHost(moves)
			moves++
			if _, err := s.Run(Fault{
				Name:       fmt.Sprintf("run %d: node %s moves to %s", run+1, n.Announced(), host),
				Bound:      GracefulBound,
				NoFailures: true,
				Keep:       moves > 1,
				Inject: func() ([]string, error) {
					from, to, err := ps.MoveHost(s.ctx, s.c, n, host)
					return []string{fmt.Sprintf("%s moved from %s to %s", n.Addr, from, to)}, err
				},
			}); err != nil {
				return err
			}
		}
	}
	if _, err := s.RunIdle(IdleFault{Name: "idle after every address changed", Quiet: IdleFor}); err != nil {
		return err
	}
	// Then a crash while idle, of a master none of whose addresses the
	// clients were given: its replica is found at its new address too.
	return IdleKill(s, 1)
}
