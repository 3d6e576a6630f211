package harness

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/internal/chaos"
	"github.com/tollgate/tollgate/internal/testcluster"
)

// DefaultScenarios returns the names of the scenarios a suite runs when none
// are named: one of each kind of fault (graceful, crash, connection loss,
// partition), about a minute and a half with one run each.
func DefaultScenarios() []string {
	return []string{"graceful-failover", "kill-master", "client-kill", "black-hole"}
}

// SuiteConfig configures RunSuite.
type SuiteConfig struct {
	// Scenarios are the names of the scenarios to run, in order (see
	// Defs); empty means DefaultScenarios.
	Scenarios []string
	// Runs is how many times each scenario repeats its faults; at least 1.
	Runs int
	// Out is the directory the reports are written to. Required.
	Out string
	// Addrs, when set, are the addresses of a running cluster on loopback
	// to use instead of starting one; only the scenarios that need neither
	// process control nor fault proxies can run there.
	Addrs []string
	// RedisServer is the redis-server binary for the clusters the suite
	// starts; empty means redis-server from PATH.
	RedisServer string
	// Logf receives the scenarios' log lines and failures; nil discards
	// them.
	Logf func(format string, args ...any)
	// OnScenario is called when a scenario starts; OnFault after each
	// fault, with its failures. Either may be nil.
	OnScenario func(d Def)
	OnFault    func(d Def, f chaos.Fault, failures []string)
}

// Result is what one scenario of a suite did.
type Result struct {
	Def Def
	// Report is the scenario's report and Path the JSON file it was written
	// to; both are empty when the scenario could not start.
	Report chaos.Report
	Path   string
	// Failures are the checks it failed, in order: missed bounds, stuck
	// slots, units over limit, lost or unexplained.
	Failures []string
	// Err says why the scenario stopped before its end, if it did.
	Err error
}

// Failed reports whether the scenario failed a check or did not run to its
// end.
func (r Result) Failed() bool { return len(r.Failures) > 0 || r.Err != nil }

// Check validates c and returns the scenarios it selects.
func (c SuiteConfig) Check() ([]Def, error) {
	names := c.Scenarios
	if len(names) == 0 {
		names = DefaultScenarios()
	}
	if c.Runs < 1 {
		return nil, fmt.Errorf("harness: runs %d: want at least 1", c.Runs)
	}
	if c.Out == "" {
		return nil, errors.New("harness: no output directory")
	}
	var defs []Def
	for _, n := range names {
		d, ok := FindDef(n)
		if !ok {
			var all []string
			for _, d := range Defs() {
				all = append(all, d.Name)
			}
			return nil, fmt.Errorf("harness: unknown scenario %q; scenarios: %s", n, strings.Join(all, ", "))
		}
		if slices.ContainsFunc(defs, func(x Def) bool { return x.Name == n }) {
			return nil, fmt.Errorf("harness: scenario %q named twice", n)
		}
		if len(c.Addrs) > 0 && d.Needs != 0 {
			return nil, fmt.Errorf("harness: scenario %q %s, so it runs only on the cluster tollgate-lab chaos starts itself, not on one given by address", n, d.Needs)
		}
		defs = append(defs, d)
	}
	return defs, nil
}

// String says what a scenario needs, for error messages.
func (n Needs) String() string {
	var s []string
	if n&NeedsProcesses != 0 {
		s = append(s, "kills and restarts nodes (process control)")
	}
	if n&NeedsProxies != 0 {
		s = append(s, "needs fault proxies between clients and nodes")
	}
	if len(s) == 0 {
		return "needs nothing more"
	}
	return strings.Join(s, " and ")
}

// RunSuite runs the scenarios of cfg one after the other, each on a fresh
// load and key sets, on the clusters it needs: a 3+3 cluster on loopback,
// another behind fault proxies for the scenarios that need them, or the
// cluster at cfg.Addrs. It stops what it started before it returns, also
// when ctx ends, and then returns the results so far with ctx's error.
// Every scenario's report is written to cfg.Out, also one that failed.
func RunSuite(ctx context.Context, cfg SuiteConfig) (_ []Result, err error) {
	defs, err := cfg.Check()
	if err != nil {
		return nil, err
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var plain, proxied *testcluster.Cluster
	var ps *Proxies
	defer func() {
		for _, c := range []*testcluster.Cluster{plain, proxied} {
			if c != nil {
				if serr := c.Stop(); serr != nil {
					err = errors.Join(err, fmt.Errorf("harness: stopping a cluster: %w", serr))
				}
			}
		}
		if ps != nil {
			ps.Close()
		}
	}()
	if len(cfg.Addrs) > 0 {
		if plain, err = testcluster.Attach(ctx, cfg.Addrs); err != nil {
			return nil, err
		}
	} else {
		bin := cfg.RedisServer
		if bin == "" {
			bin = "redis-server"
		}
		if _, lerr := exec.LookPath(bin); lerr != nil {
			return nil, fmt.Errorf("%w: %w (install it, e.g. apt-get install redis-server, or give the addresses of a running cluster)", testcluster.ErrNoServer, lerr)
		}
		o := testcluster.Options{RedisServer: bin, Logf: logf}
		needPlain := slices.ContainsFunc(defs, func(d Def) bool { return d.Needs&NeedsProxies == 0 })
		needProxies := slices.ContainsFunc(defs, func(d Def) bool { return d.Needs&NeedsProxies != 0 })
		if needPlain {
			if plain, _, err = StartCluster(ctx, o, false); err != nil {
				return nil, fmt.Errorf("harness: starting a cluster: %w", err)
			}
			logf("cluster %v started", plain.Addrs())
		}
		if needProxies {
			if proxied, ps, err = StartCluster(ctx, o, true); err != nil {
				return nil, fmt.Errorf("harness: starting a cluster behind fault proxies: %w", err)
			}
			logf("cluster behind fault proxies %v started", proxied.Addrs())
		}
	}

	var results []Result
	for _, d := range defs {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		c, p := plain, (*Proxies)(nil)
		if d.Needs&NeedsProxies != 0 {
			c, p = proxied, ps
		}
		results = append(results, runOne(ctx, cfg, d, c, p, logf))
	}
	return results, ctx.Err()
}

// runOne runs one scenario to its end and finishes it.
func runOne(ctx context.Context, cfg SuiteConfig, d Def, c *testcluster.Cluster, ps *Proxies, logf func(string, ...any)) Result {
	if cfg.OnScenario != nil {
		cfg.OnScenario(d)
	}
	res := Result{Def: d}
	rep := &recorder{logf: logf, prefix: d.Name + ": "}
	s, err := New(ctx, Options{
		Name: d.Name, Lossless: d.Lossless, Cluster: c, Proxies: ps, Out: cfg.Out, Report: rep,
		OnFault: func(f chaos.Fault, failures []string) {
			if cfg.OnFault != nil {
				cfg.OnFault(d, f, failures)
			}
		},
	})
	if err != nil {
		res.Err = fmt.Errorf("%s: %w", d.Name, err)
		return res
	}
	if err := d.Run(s, cfg.Runs); err != nil {
		res.Err = fmt.Errorf("%s: %w", d.Name, err)
	}
	res.Report, res.Path = s.Finish()
	res.Failures = rep.failed()
	return res
}

// recorder is the Reporter of a suite's scenario: it logs every line and
// keeps the failures.
type recorder struct {
	logf     func(string, ...any)
	prefix   string
	mu       sync.Mutex
	failures []string
}

func (r *recorder) Logf(format string, args ...any) { r.logf(r.prefix+format, args...) }

func (r *recorder) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.failures = append(r.failures, msg)
	r.mu.Unlock()
	r.logf("%sFAIL: %s", r.prefix, msg)
}

func (r *recorder) failed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.failures)
}

// FaultFailed reports whether a fault of scenario d failed: a check of its
// own (bound, stuck slots, idle recovery), units over limit on its key set
// beyond the units it lost (a key that lost units to a failover may be
// allowed them again), or, for a lossless scenario, units lost.
func FaultFailed(d Def, f chaos.Fault) bool {
	return len(f.Failures) > 0 || len(f.Stuck) > 0 || f.OverLimitUnits > f.LostUnits || (d.Lossless && f.LostUnits > 0)
}

// Summary renders results as a table: a line per fault with when the
// cluster was healthy again, when every slot had served again (after the
// fault, or after the resume for a fault injected while idle), the bound,
// whether any slot stuck, the units over limit and lost on the fault's key
// set, and the calls and errors from the fault to the end of its step.
func Summary(results []Result) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "scenario\tfault\thealthy after\trecovered after\tbound\tstuck\tover limit\tlost\tcalls/errors\tresult")
	ms := func(v int64) string { return (time.Duration(v) * time.Millisecond).String() }
	for _, r := range results {
		for _, f := range r.Report.Faults {
			rec := ms(f.RecoveryMS)
			if f.Idle {
				rec += " (resume)"
			}
			if len(f.Unrecovered) > 0 {
				rec = fmt.Sprintf("never (%d slots)", len(f.Unrecovered))
			}
			stuck := "no"
			if len(f.Stuck) > 0 {
				stuck = fmt.Sprintf("yes (%d slots)", len(f.Stuck))
			}
			result := "ok"
			if FaultFailed(r.Def, f) {
				result = "FAIL"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d/%d\t%s\n", r.Def.Name, f.Name, ms(f.HealthyMS), rec, ms(f.BoundMS),
				stuck, f.OverLimitUnits, f.LostUnits, f.Calls.Calls, f.Calls.Failed(), result)
		}
		if r.Err != nil {
			fmt.Fprintf(w, "%s\tstopped: %v\t\t\t\t\t\t\t\tFAIL\n", r.Def.Name, r.Err)
		}
	}
	w.Flush()
	return b.String()
}
