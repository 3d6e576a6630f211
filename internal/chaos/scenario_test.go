package chaos_test

import (
	"context"
	"os"
	"testing"

	"github.com/tollgate/tollgate/internal/chaos"
	"github.com/tollgate/tollgate/internal/chaos/harness"
	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/store/redis"
)

// The scenarios and their runner live in package harness, shared with
// `tollgate-lab chaos`; these are the test's names for them: a scenario fails
// the test on what harness reports with Errorf, and stops it on an error.

// runs is how many times each scenario repeats its faults.
const runs = 2

// scenario is a harness.Scenario of one test. Its fields are fixed once it
// has started.
type scenario struct {
	*harness.Scenario
	t   *testing.T
	ctx context.Context
	// faults are the faults measured so far; once the scenario has
	// finished, with their accounting.
	faults []chaos.Fault
}

// newScenario waits for a healthy cluster, connects clients and starts the
// load. Its cleanup stops the load, checks the accounting of every key set
// and writes the report (into $TOLLGATE_CHAOS_OUT, or a temporary
// directory).
func newScenario(t *testing.T, name string, lossless bool) *scenario {
	return newScenarioOn(t, needCluster(t), name, lossless)
}

// newScenarioOn is newScenario on a given cluster.
func newScenarioOn(t *testing.T, c *testcluster.Cluster, name string, lossless bool) *scenario {
	return newScenarioWith(t, c, name, lossless, nil)
}

// newScenarioWith is newScenarioOn with clients from open (nil: the
// default clients).
func newScenarioWith(t *testing.T, c *testcluster.Cluster, name string, lossless bool, open func(context.Context) (*redis.Store, error)) *scenario {
	t.Helper()
	return startScenario(t, harness.Options{Name: name, Lossless: lossless, Cluster: c, Open: open})
}

// startScenario starts a scenario from o, filling in the context, the
// reporter and the output directory, and finishes it at the test's end.
func startScenario(t *testing.T, o harness.Options) *scenario {
	t.Helper()
	if o.Out = os.Getenv("TOLLGATE_CHAOS_OUT"); o.Out == "" {
		o.Out = t.TempDir()
	}
	if o.Proxies == nil && o.Cluster == behindProxies.c && behindProxies.ps != nil {
		o.Proxies = behindProxies.ps
	}
	o.Report = t
	hs, err := harness.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{Scenario: hs, t: t, ctx: t.Context()}
	t.Cleanup(func() {
		hs.Finish()
		s.faults = hs.Faults()
	})
	return s
}

// check fails the test on an error of a scenario's faults.
func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// run injects f under load and measures and checks its effect.
func (s *scenario) run(f harness.Fault) {
	s.t.Helper()
	_, err := s.Run(f)
	check(s.t, err)
	s.faults = s.Faults()
}

// shards returns the cluster's shards, failing the test on error.
func (s *scenario) shards() []testcluster.Shard {
	s.t.Helper()
	sh, err := s.Shards()
	check(s.t, err)
	return sh
}

// masters returns the cluster's masters, failing the test on error.
func (s *scenario) masters() []*testcluster.Node {
	s.t.Helper()
	ms, err := s.Masters()
	check(s.t, err)
	return ms
}
