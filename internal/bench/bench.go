// Package bench is the load generator of `tollgate-lab bench`: it drives a
// Target (the library in process, a running service over HTTP or gRPC, or a
// peer limiter on Redis) from many goroutines and reports throughput,
// outcomes, latency quantiles and errors by kind.
//
// A run is always bounded: it stops after Config.Duration, after
// Config.Count checks when that is set, or when its context is cancelled,
// whichever comes first, and still reports what it measured. Each check
// has its own timeout (Config.CheckTimeout), so a hung target cannot hold a
// run past its duration for long.
//
// Compare runs the same load against Tollgate and the baselines a user would
// pick instead (the seed's sorted-set pattern, go-redis/redis_rate, and
// redis-benchmark running Tollgate's own script as the ceiling), one after
// another on the same Redis deployment, and reports each as a ratio to
// Tollgate.
package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for zero Config fields.
const (
	DefaultKeys         = 10_000
	DefaultConcurrency  = 64
	DefaultDuration     = 10 * time.Second
	DefaultCheckTimeout = time.Second
	// DefaultResetTimeout bounds the untimed reset of a run's keys.
	DefaultResetTimeout = 30 * time.Second
	// ProgressInterval is how often Config.Progress is called.
	ProgressInterval = 100 * time.Millisecond
)

// Bounds of Config fields, and of Comparison.Rounds.
const (
	MaxKeys        = 10_000_000
	MaxConcurrency = 10_000
	MaxDuration    = 24 * time.Hour
	MaxRate        = 10_000_000 // checks/s
	MaxRounds      = 100        // Comparison.Rounds
)

// A Target answers checks. Implementations must be safe for concurrent use.
type Target interface {
	// Check consumes cost units of key if they fit, and reports whether
	// they did. An error means the check had no answer.
	Check(ctx context.Context, key string, cost int64) (allowed bool, err error)
}

// A BatchTarget is a Target that answers several checks per call, as one
// request (the HTTP target with HTTPOptions.Batch). Run has each caller
// send BatchSize checks at a time through CheckBatch, and counts each
// check: figures per second are checks, not calls, and each check's
// latency is its call's.
type BatchTarget interface {
	Target
	// BatchSize is the most checks CheckBatch is given at once; 1 or less
	// makes Run use Check.
	BatchSize() int
	// CheckBatch checks keys[i] at costs[i] for every i and sets
	// allowed[i] and errs[i] to each check's outcome, as Check would
	// return them.
	CheckBatch(ctx context.Context, keys []string, costs []int64, allowed []bool, errs []error)
}

// A Resetter is a Target that can forget a key. Run resets the keys it used
// afterwards, untimed, unless Config.KeepKeys.
type Resetter interface {
	Reset(ctx context.Context, key string) error
}

// Config is the load of a run. The zero value is DefaultConcurrency callers
// checking cost 1 on DefaultKeys keys for DefaultDuration.
type Config struct {
	// Keys is how many distinct keys the checks go to, each check to one
	// picked uniformly at random; 0 means DefaultKeys.
	Keys int
	// KeyPrefix starts every key (the key is KeyPrefix + its index). ""
	// means "bench-" + a random run id + "-", so that runs never share
	// state.
	KeyPrefix string
	// Concurrency is how many goroutines check at once, each waiting for
	// its answer before the next; 0 means DefaultConcurrency. With Rate,
	// it is the most checks in flight.
	Concurrency int
	// Rate, when positive, makes the run open-loop: checks are scheduled at
	// this fixed arrival rate (checks/s; check i at start + i/Rate) whatever
	// the answers take, and each latency is measured from its check's
	// scheduled start, not from when a caller was free to send it, so that
	// a stall counts for every check it delayed (no coordinated omission,
	// as in wrk2 and vegeta). At most Concurrency checks are in flight; a
	// check due while all are busy starts late, and its wait counts in its
	// latency. 0 means closed loop: each caller sends its next check as
	// soon as it has an answer.
	Rate float64
	// Duration bounds the run; 0 means DefaultDuration.
	Duration time.Duration
	// Count, when positive, bounds the number of checks too: the run stops
	// at whichever bound it reaches first.
	Count int64
	// Cost draws each check's cost; the zero Cost is always 1.
	Cost Cost
	// CheckTimeout bounds each check; 0 means DefaultCheckTimeout. A check
	// in flight when the run stops (by any bound, or cancellation) may
	// finish within it and is counted.
	CheckTimeout time.Duration
	// KeepKeys leaves the keys' state in the target's store. By default a
	// Target that is a Resetter has every key reset after the run (untimed,
	// within DefaultResetTimeout), so that benchmarks leave nothing behind.
	KeepKeys bool
	// Progress, when not nil, is called every ProgressInterval during a run
	// and once at its end (Done set), from one goroutine at a time.
	Progress func(Progress)
	// ServerCPU, when not nil, returns the CPU time the store's servers
	// have used so far; Run reads it before and after the load (not the
	// reset) for Row.ServerCPU. An error leaves Row.ServerCPU 0.
	ServerCPU func(context.Context) (time.Duration, error)
}

// Progress is a run's state, for a progress bar.
type Progress struct {
	// Name is the run's name (the Row it will make).
	Name string
	// Checks is how many checks have been answered or failed so far.
	Checks int64
	// Elapsed is the time since the run started.
	Elapsed time.Duration
	// Fraction is how far the run is to its nearest bound, 0 to 1.
	Fraction float64
	// Done is set on the last call.
	Done bool
}

// normalize applies defaults and checks bounds.
func (c Config) normalize() (Config, error) {
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = DefaultCheckTimeout
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "bench-" + runID() + "-"
	}
	switch {
	case c.Keys < 1 || c.Keys > MaxKeys:
		return c, fmt.Errorf("bench: keys %d out of range [1, %d]", c.Keys, MaxKeys)
	case c.Concurrency < 1 || c.Concurrency > MaxConcurrency:
		return c, fmt.Errorf("bench: concurrency %d out of range [1, %d]", c.Concurrency, MaxConcurrency)
	case c.Duration < 0 || c.Duration > MaxDuration:
		return c, fmt.Errorf("bench: duration %s out of range (0, %s]", c.Duration, MaxDuration)
	case c.Count < 0:
		return c, fmt.Errorf("bench: count %d is negative", c.Count)
	case c.CheckTimeout < 0:
		return c, fmt.Errorf("bench: check timeout %s is negative", c.CheckTimeout)
	case c.Rate < 0 || c.Rate > MaxRate || math.IsNaN(c.Rate):
		return c, fmt.Errorf("bench: rate %v out of range [0, %d]", c.Rate, int(MaxRate))
	}
	return c, nil
}

// runID is a short random id.
func runID() string { return strconv.FormatUint(rand.Uint64()>>24, 36) }

// Stop reasons of a Row.
const (
	StoppedByCount     = "count"
	StoppedByDuration  = "duration"
	StoppedByInterrupt = "interrupt"
)

// worker is one goroutine's tally.
type worker struct {
	allowed, denied, errors int64
	hist                    Histogram
	kinds                   map[string]int64
	samples                 map[string]string
}

// scheduled returns when check i of an open-loop run that started at start
// is due, one every interval nanoseconds. Computed from i, not by adding up
// intervals, so that rounding does not drift.
func scheduled(start time.Time, interval float64, i int64) time.Time {
	return start.Add(time.Duration(math.Round(float64(i) * interval)))
}

// Run runs cfg's load against t and returns its row, named name. It fails
// only for an invalid cfg; the target's failures are counted in the row.
// Cancelling ctx stops the run early (StoppedBy "interrupt"); the row then
// holds what was measured.
func Run(ctx context.Context, name string, t Target, cfg Config) (Row, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return Row{}, err
	}
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = cfg.KeyPrefix + strconv.Itoa(i)
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	// Checks are not cancelled with the run: one in flight when it stops
	// finishes (within CheckTimeout) and is counted as answered.
	checkBase := context.WithoutCancel(ctx)

	var (
		issued, done atomic.Int64
		countHit     atomic.Bool
		wg           sync.WaitGroup
		workers      = make([]*worker, cfg.Concurrency)
	)
	srv0, srvErr := time.Duration(0), error(nil)
	if cfg.ServerCPU != nil {
		srv0, srvErr = cfg.ServerCPU(checkBase)
	}
	cpu0 := processCPU()
	start := time.Now()
	// due returns when check i is scheduled in an open-loop run.
	interval := 0.0
	if cfg.Rate > 0 {
		interval = float64(time.Second) / cfg.Rate
	}
	due := func(i int64) time.Time { return scheduled(start, interval, i) }
	var next atomic.Int64 // open loop: the next check to send
	size := 1             // checks per call
	batch, _ := t.(BatchTarget)
	if batch != nil {
		size = max(batch.BatchSize(), 1)
	}
	for i := range workers {
		w := &worker{}
		workers[i] = w
		wg.Go(func() {
			var (
				timer   *time.Timer
				bkeys   = make([]string, size)
				bcosts  = make([]int64, size)
				allowed = make([]bool, size)
				errs    = make([]error, size)
			)
			for runCtx.Err() == nil {
				n := int64(size) // checks of this call
				if cfg.Count > 0 {
					end := issued.Add(n)
					if end-n >= cfg.Count {
						countHit.Store(true)
						return
					}
					n = min(n, cfg.Count-(end-n)) // the last call may carry fewer
				}
				var (
					at   time.Time // when the call is due; zero in closed loop
					slot int64     // open loop: its first check's number
				)
				if cfg.Rate > 0 {
					slot = next.Add(n) - n
					if due(slot).Sub(start) >= cfg.Duration {
						return
					}
					at = due(slot + n - 1) // a batch goes when its last check is due
					if wait := time.Until(at); wait > 0 {
						if timer == nil {
							timer = time.NewTimer(wait)
						} else {
							timer.Reset(wait)
						}
						select {
						case <-runCtx.Done():
							timer.Stop()
							return
						case <-timer.C:
						}
					}
				}
				for j := range n {
					bkeys[j] = keys[rand.IntN(len(keys))]
					bcosts[j] = cfg.Cost.Draw()
				}
				cctx, ccancel := context.WithTimeout(checkBase, cfg.CheckTimeout)
				t0 := time.Now()
				if size == 1 {
					allowed[0], errs[0] = t.Check(cctx, bkeys[0], bcosts[0])
				} else {
					batch.CheckBatch(cctx, bkeys[:n], bcosts[:n], allowed[:n], errs[:n])
				}
				end := time.Now()
				ccancel()
				for j := range n {
					elapsed := end.Sub(t0)
					if cfg.Rate > 0 {
						elapsed = end.Sub(due(slot + j)) // from its own scheduled start
					}
					w.record(allowed[j], errs[j], elapsed)
				}
				done.Add(n)
			}
		})
	}

	progress := func(final bool) {
		if cfg.Progress == nil {
			return
		}
		el := time.Since(start)
		f := el.Seconds() / cfg.Duration.Seconds()
		if cfg.Count > 0 {
			f = max(f, float64(done.Load())/float64(cfg.Count))
		}
		cfg.Progress(Progress{Name: name, Checks: done.Load(), Elapsed: el, Fraction: min(f, 1), Done: final})
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	tick := time.NewTicker(ProgressInterval)
	for waiting := true; waiting; {
		select {
		case <-finished:
			waiting = false
		case <-tick.C:
			progress(false)
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	var srv time.Duration
	if cfg.ServerCPU != nil && srvErr == nil {
		var srv1 time.Duration
		if srv1, srvErr = cfg.ServerCPU(checkBase); srvErr == nil {
			srv = srv1 - srv0
		}
	}
	progress(true)

	row := Row{Name: name, Elapsed: elapsed, OfferedPerSec: cfg.Rate}
	var hist Histogram
	for _, w := range workers {
		row.Allowed += w.allowed
		row.Denied += w.denied
		row.Errors += w.errors
		hist.Merge(&w.hist)
		for k, n := range w.kinds {
			if row.ErrorKinds == nil {
				row.ErrorKinds = map[string]int64{}
				row.ErrorSamples = map[string]string{}
			}
			row.ErrorKinds[k] += n
			if _, ok := row.ErrorSamples[k]; !ok {
				row.ErrorSamples[k] = w.samples[k]
			}
		}
	}
	row.Checks = row.Allowed + row.Denied + row.Errors
	row.ChecksPerSec = float64(row.Checks) / elapsed.Seconds()
	if row.Checks > 0 {
		row.ClientCPU = cpu / time.Duration(row.Checks)
		row.ServerCPU = srv / time.Duration(row.Checks)
	}
	row.P50, row.P90, row.P99, row.P999 = hist.Quantile(0.50), hist.Quantile(0.90), hist.Quantile(0.99), hist.Quantile(0.999)
	row.hist = &hist
	switch {
	case ctx.Err() != nil:
		row.StoppedBy = StoppedByInterrupt
	case countHit.Load():
		row.StoppedBy = StoppedByCount
	default:
		row.StoppedBy = StoppedByDuration
	}

	if size > 1 {
		row.Note = fmt.Sprintf("%d checks per request; a check's latency is its request's", size)
	}
	if r, ok := t.(Resetter); ok && !cfg.KeepKeys {
		if n, err := resetKeys(checkBase, r, keys, cfg.Concurrency); err != nil {
			row.Note = strings.TrimPrefix(row.Note+"; ", "; ") + fmt.Sprintf("%d of %d keys not reset: %v", n, len(keys), err)
		}
	}
	return row, nil
}

// record tallies one check's outcome.
func (w *worker) record(allowed bool, err error, elapsed time.Duration) {
	switch {
	case err != nil:
		w.errors++
		w.addError(err)
	case allowed:
		w.allowed++
		w.hist.Record(elapsed)
	default:
		w.denied++
		w.hist.Record(elapsed)
	}
}

func (w *worker) addError(err error) {
	k := Kind(err)
	if w.kinds == nil {
		w.kinds = map[string]int64{}
		w.samples = map[string]string{}
	}
	if w.kinds[k]++; w.kinds[k] == 1 {
		w.samples[k] = err.Error()
	}
}

// resetKeys resets keys through r, concurrency at a time, within
// DefaultResetTimeout; it returns how many failed and the first error.
func resetKeys(ctx context.Context, r Resetter, keys []string, concurrency int) (int64, error) {
	return forEachKey(ctx, keys, concurrency, r.Reset)
}

// forEachKey calls fn for every key, concurrency at a time, within
// DefaultResetTimeout (keys left when the time is up fail); it returns how
// many failed and the first error.
func forEachKey(ctx context.Context, keys []string, concurrency int, fn func(ctx context.Context, key string) error) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultResetTimeout)
	defer cancel()
	var (
		next, failed atomic.Int64
		firstErr     error
		mu           sync.Mutex
		wg           sync.WaitGroup
	)
	for range min(concurrency, len(keys)) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(keys)) {
					return
				}
				if ctx.Err() != nil {
					failed.Add(1)
					continue
				}
				if err := fn(ctx, keys[i]); err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	n := failed.Load()
	if n > 0 && firstErr == nil {
		firstErr = ctx.Err() // skipped when the time was up
	}
	return n, firstErr
}
