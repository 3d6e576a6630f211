package rls_test

import (
	"context"
	"log"
	"net"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/server/rls"
	"github.com/tollgate/tollgate/store/memory"
)

// Serve the Envoy rate limit service on rules that follow their file, until
// SIGTERM.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	rules, err := config.NewEnvoyHolder("/etc/tollgate/envoy") // a file or a directory
	if err != nil {
		log.Fatal(err)
	}
	go rules.Watch(ctx, 0, func(err error) {
		if err != nil {
			log.Printf("rules not reloaded: %v", err)
		}
	})

	store := memory.New(memory.Options{})
	defer store.Close()
	srv := rls.New(tollgate.New(store, tollgate.Options{}), rules, rls.Options{})

	g := grpc.NewServer()
	health := srv.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:8081")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		<-ctx.Done()
		health.Shutdown() // report NOT_SERVING first
		g.GracefulStop()
	}()
	if err := g.Serve(ln); err != nil {
		log.Fatal(err)
	}
}
