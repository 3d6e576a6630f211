// Command tollgate-lab measures Tollgate: `tollgate-lab bench` benchmarks
// the library, a running service or its Envoy rate limit service against
// the alternatives, and `tollgate-lab chaos` injects faults into a local
// Redis Cluster under load and measures recovery. It is a binary of its own,
// as redis-benchmark is beside redis-server, so that the service binary
// (cmd/tollgate) carries neither the benchmark peers' Redis client nor the
// chart renderer nor the local cluster tooling. Its figures are in
// BENCHMARKS.md.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().ExecuteContext(context.Background()); err != nil {
		os.Exit(1) // cobra has printed the error
	}
}

// newRootCmd returns the tollgate-lab command.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:          "tollgate-lab",
		Short:        "Tollgate's benchmark and fault tools",
		SilenceUsage: true,
	}
	root.AddCommand(newBenchCmd())
	root.AddCommand(newChaosCmd())
	return root
}
