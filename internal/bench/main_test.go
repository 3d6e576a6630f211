package bench_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcluster"
)

// cluster is a real Redis Cluster (3 masters, 3 replicas on loopback) for
// the tests that need one; nil when redis-server is not installed outside
// CI, and those tests skip.
var cluster *testcluster.Cluster

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := testcluster.Start(ctx, testcluster.Options{})
	switch {
	case errors.Is(err, testcluster.ErrNoServer) && os.Getenv("CI") != "true":
		fmt.Println("internal/bench: Redis tests skip, redis-server is not installed (scripts/test.sh installs it):", err)
	case err != nil:
		fmt.Fprintln(os.Stderr, "internal/bench: starting Redis:", err)
		return 1
	default:
		cluster = c
		defer c.Stop()
	}
	return m.Run()
}

func needCluster(t *testing.T) {
	t.Helper()
	if cluster == nil {
		t.Skip("redis-server is not installed")
	}
}
