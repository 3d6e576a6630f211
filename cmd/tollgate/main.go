// Command tollgate runs the Tollgate rate-limit service.
//
//	tollgate serve [--listen 127.0.0.1:8080] [--redis HOST:PORT | --redis-cluster HOST:PORT,...]
//
// Without --redis or --redis-cluster, serve keeps limiter state in process
// memory. See package server/httpapi for the HTTP API.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Flag defaults.
const (
	defaultListen          = "127.0.0.1:8080"
	defaultShutdownTimeout = 10 * time.Second
)

func main() {
	if err := newRootCmd().ExecuteContext(context.Background()); err != nil {
		os.Exit(1) // cobra has printed the error
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:          "tollgate",
		Short:        "Tollgate: rate limits and quotas over Redis",
		SilenceUsage: true,
	}
	root.AddCommand(newServeCmd())
	return root
}

func newServeCmd() *cobra.Command {
	var (
		cfg      serveConfig
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := parseLevel(logLevel)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, cfg, logger)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", defaultListen, "`HOST:PORT` to serve HTTP on (port 0 picks a free one)")
	f.StringVar(&cfg.Store.Redis, "redis", "", "standalone Redis `HOST:PORT` (default: in-memory store)")
	f.StringSliceVar(&cfg.Store.RedisCluster, "redis-cluster", nil, "Redis Cluster seed nodes, `HOST:PORT[,HOST:PORT...]`")
	f.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "how long to let in-flight requests finish on shutdown")
	return cmd
}

// parseLevel parses a --log-level value.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", s)
}
