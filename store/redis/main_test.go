package redis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcluster"
)

// The package's tests and benchmarks share one Cluster (3 masters, 3
// replicas) and one standalone server, real redis-server processes on
// loopback started here and stopped when they end.
var (
	cluster    *testcluster.Cluster
	standalone *testcluster.Server
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	cluster, err = testcluster.Start(ctx, testcluster.Options{})
	if err == nil {
		defer cluster.Stop()
		standalone, err = testcluster.StartStandalone(ctx, testcluster.Options{})
	}
	if err == nil {
		defer standalone.Stop()
	}
	switch {
	case errors.Is(err, testcluster.ErrNoServer) && os.Getenv("CI") != "true":
		fmt.Println("store/redis: skipping, redis-server is not installed (scripts/test.sh installs it):", err)
		return 0
	case err != nil:
		fmt.Fprintln(os.Stderr, "store/redis: starting Redis:", err)
		return 1
	}
	return m.Run()
}
