// Command cluster runs the local test Redis Cluster (package
// internal/testcluster: 3 masters and 3 replicas on 127.0.0.11-16, free
// ports, data in a temp dir) for the Node.js client's tests.
//
// It prints one JSON line, {"addrs":["127.0.0.11:PORT",...]}, once the
// cluster is healthy, and stops the cluster (removing its data) when its
// standard input closes or it gets SIGINT or SIGTERM; the nodes die with
// it even if it is killed. Exit status 3 means redis-server is missing.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/testcluster"
)

// startTimeout bounds the cluster's start.
const startTimeout = 60 * time.Second

func main() {
	os.Exit(run())
}

func run() int {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := testcluster.Start(ctx, testcluster.Options{
		Logf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
	})
	if errors.Is(err, testcluster.ErrNoServer) {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 3
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	status := 0
	if err := json.NewEncoder(os.Stdout).Encode(map[string][]string{"addrs": c.Addrs()}); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		status = 1
	} else {
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(done)
		}()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		select {
		case <-done:
		case <-sig:
		}
	}
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster: stop:", err)
		return 1
	}
	return status
}
