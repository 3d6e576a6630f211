// Command tollgate runs the Tollgate rate-limit service.
//
//	tollgate serve [--config tollgate.yaml] [--listen 127.0.0.1:8080]
//	               [--grpc-listen HOST:PORT --envoy-config PATH]
//	               [--redis HOST:PORT | --redis-cluster HOST:PORT,...]
//	               [--check-timeout 100ms] [--api-token-file FILE] [--admin-token-file FILE]
//	               [--local-cache-size 100000] [--local-cache-max-age 10s] ...
//
// Without --redis or --redis-cluster, serve keeps limiter state in process
// memory. See package server/httpapi for the HTTP API and package server/rls
// for the Envoy rate limit service; package internal/service runs them.
// Prometheus metrics (package server/metrics) are served on the HTTP
// listener at /metrics, without a token. The benchmark and fault tools are
// a binary of their own, tollgate-lab, as redis-benchmark is beside
// redis-server.
//
// A denial with a Retry-After is remembered (store/overlimit) and answered
// in process until then, at most --local-cache-max-age, for up to
// --local-cache-size keys; the store is not asked again meanwhile.
//
// # Settings
//
// The settings are package settings' model. Every setting is a flag, and
// can also come from the environment variable TOLLGATE_ followed by the
// flag's name in upper case with dashes as underscores (--check-timeout:
// TOLLGATE_CHECK_TIMEOUT; a list such as --redis-cluster is
// comma-separated), and, except --config itself, from the server section of
// the --config file (its keys are the flag names with underscores). A flag
// on the command line wins over the environment, which wins over the file,
// which wins over the default.
//
// The file's policies, and the Envoy configs of --envoy-config, are reloaded
// when they change (polled every --reload-interval) and on SIGHUP: a new
// version is validated first and, if invalid, logged at Error and ignored,
// so the previous one stays in force. The server section is read once, at
// start; a change to it is logged and applies at the next start.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/service"
	"github.com/tollgate/tollgate/settings"
)

func main() {
	if err := newRootCmd(os.LookupEnv).ExecuteContext(context.Background()); err != nil {
		os.Exit(1) // cobra has printed the error
	}
}

// newRootCmd returns the tollgate command; lookupEnv reads the environment
// (os.LookupEnv in main; nil reads none).
func newRootCmd(lookupEnv func(string) (string, bool)) *cobra.Command {
	root := &cobra.Command{
		Use:          "tollgate",
		Short:        "Tollgate: rate limits and quotas over Redis",
		SilenceUsage: true,
	}
	root.AddCommand(newServeCmd(lookupEnv))
	return root
}

func newServeCmd(lookupEnv func(string) (string, bool)) *cobra.Command {
	cfg := service.Config{Settings: settings.Default()}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API (and the Envoy rate limit service) until SIGINT or SIGTERM",
		Long: `Serve the HTTP API, and with --grpc-listen the Envoy rate limit service,
until SIGINT or SIGTERM; then stop accepting, let in-flight checks finish
for up to --shutdown-timeout, and close the store.

Every flag can also be set by the environment variable TOLLGATE_<FLAG>
(upper case, dashes as underscores) and, except --config, by the server
section of the --config file. Command line > environment > file > default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if err := settings.ApplyEnv(f, lookupEnv); err != nil {
				return err
			}
			if cfg.Config != "" {
				c, err := config.Load(cfg.Config)
				if err != nil {
					return fmt.Errorf("--config: %w", err)
				}
				if err := settings.ApplyFile(f, c.Server()); err != nil {
					return err
				}
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			level, _ := cfg.Log.SlogLevel() // valid: checked above
			logger := service.NewLogger(cmd.ErrOrStderr(), level)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			cfg.Reload = hup
			return service.Run(ctx, cfg, logger)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	cfg.AddFlags(f)
	return cmd
}
