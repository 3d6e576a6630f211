package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/chaos/harness"
	"github.com/tollgate/tollgate/internal/testcluster"
)

// The scenarios share one Cluster (3 masters, 3 replicas, cluster-node-timeout
// 2000), started by the first scenario that needs it and stopped when the
// package's tests end. Each scenario starts from a healthy cluster and uses
// its own keys; roles change from one scenario to the next.
var shared struct {
	once sync.Once
	c    *testcluster.Cluster
	err  error
}

// The scenarios that need a network between clients and nodes share a
// second cluster whose nodes announce the ports of fault proxies, one for
// clients and one for the cluster bus per node, so that clients, replicas
// and peers all reach a node through its proxies.
var behindProxies struct {
	once sync.Once
	c    *testcluster.Cluster
	ps   *harness.Proxies
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, c := range []*testcluster.Cluster{shared.c, behindProxies.c} {
		if c == nil {
			continue
		}
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: stopping a cluster:", err)
		}
	}
	if behindProxies.ps != nil {
		behindProxies.ps.Close()
	}
	stopTLS()
	os.Exit(code)
}

// needCluster returns the shared cluster, starting it on first use. Without
// redis-server it skips the test, except in CI (CI=true), where the chaos
// suite must run.
func needCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	shared.once.Do(func() {
		shared.c, _, shared.err = startCluster(t, testcluster.Options{}, false)
	})
	checkStart(t, shared.err)
	return shared.c
}

// needProxied returns the cluster behind proxies and its proxies, starting
// them on first use; it skips like needCluster.
func needProxied(t *testing.T) (*testcluster.Cluster, *harness.Proxies) {
	t.Helper()
	behindProxies.once.Do(func() {
		behindProxies.c, behindProxies.ps, behindProxies.err = startCluster(t, testcluster.Options{}, true)
	})
	checkStart(t, behindProxies.err)
	return behindProxies.c, behindProxies.ps
}

// startCluster starts a chaos cluster (harness.StartCluster), behind fault
// proxies when proxied.
func startCluster(t *testing.T, o testcluster.Options, proxied bool) (*testcluster.Cluster, *harness.Proxies, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	begin := time.Now()
	c, ps, err := harness.StartCluster(ctx, o, proxied)
	if err == nil {
		t.Logf("cluster %v started in %v", c.Addrs(), time.Since(begin).Round(time.Millisecond))
	}
	return c, ps, err
}

func checkStart(t *testing.T, err error) {
	t.Helper()
	switch {
	case errors.Is(err, testcluster.ErrNoServer) && os.Getenv("CI") != "true":
		t.Skip("chaos: skipping, redis-server is not installed (scripts/test.sh installs it):", err)
	case err != nil:
		t.Fatal("chaos: starting the cluster:", err)
	}
}
