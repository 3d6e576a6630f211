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
// for the Envoy rate limit service. `tollgate bench` measures throughput and
// latency; `tollgate chaos` injects faults into a local Redis Cluster under
// load and measures recovery. Prometheus metrics (package
// server/metrics) are served on the HTTP listener at /metrics, without a
// token.
//
// A denial with a Retry-After is remembered (store/overlimit) and answered
// in process until then, at most --local-cache-max-age, for up to
// --local-cache-size keys; the store is not asked again meanwhile.
//
// # Settings
//
// Every setting is a flag. Each flag can also come from the environment
// variable TOLLGATE_ followed by the flag's name in upper case with dashes
// as underscores (--check-timeout: TOLLGATE_CHECK_TIMEOUT; a list such as
// --redis-cluster is comma-separated), and, except --config itself, from the
// server section of the --config file (see config.Server; its keys are the
// flag names with underscores). A flag on the command line wins over the
// environment, which wins over the file, which wins over the default.
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
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/store/overlimit"
)

// Flag defaults.
const (
	defaultListen          = "127.0.0.1:8080"
	defaultCheckTimeout    = 100 * time.Millisecond
	defaultShutdownTimeout = 10 * time.Second
	defaultReloadInterval  = config.DefaultPollInterval
	// defaultLocalCacheMaxAge bounds how long a refund or reset made through
	// another instance can go unseen by this one's local cache.
	defaultLocalCacheMaxAge = 10 * time.Second
)

// envPrefix starts the name of every environment variable serve reads.
const envPrefix = "TOLLGATE_"

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
	root.AddCommand(newBenchCmd())
	root.AddCommand(newChaosCmd())
	return root
}

func newServeCmd(lookupEnv func(string) (string, bool)) *cobra.Command {
	var (
		cfg      serveConfig
		logLevel string
	)
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
			if err := applyEnv(f, lookupEnv); err != nil {
				return err
			}
			if cfg.ConfigPath != "" {
				c, err := config.Load(cfg.ConfigPath)
				if err != nil {
					return fmt.Errorf("--config: %w", err)
				}
				if err := applyFile(f, c.Server()); err != nil {
					return err
				}
			}
			level, err := parseLevel(logLevel)
			if err != nil {
				return err
			}
			logger := slog.New(contextHandler{slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})})
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			cfg.reload = hup
			return runServe(ctx, cfg, logger)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&cfg.ConfigPath, "config", "", "YAML `file` with policies and an optional server section; reloaded on change")
	f.StringVar(&cfg.Listen, "listen", defaultListen, "`HOST:PORT` to serve HTTP on (port 0 picks a free one)")
	f.StringVar(&cfg.GRPCListen, "grpc-listen", "", "`HOST:PORT` to serve the Envoy rate limit service (gRPC) on; needs --envoy-config")
	f.StringVar(&cfg.EnvoyConfigPath, "envoy-config", "", "Envoy ratelimit descriptor configs, a `file or directory`; reloaded on change")
	addStoreFlags(f, &cfg.Store)
	f.DurationVar(&cfg.CheckTimeout, "check-timeout", defaultCheckTimeout, "how long a check may wait for the store before the policy's failure mode applies")
	f.StringVar(&cfg.APITokenFile, "api-token-file", "", "`file` of bearer tokens (one a line) that /v1/* requests need")
	f.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "`file` of bearer tokens that may also call /v1/reset")
	f.DurationVar(&cfg.ReloadInterval, "reload-interval", defaultReloadInterval, "how often to look for changes to --config and --envoy-config")
	f.IntVar(&cfg.LocalCacheSize, "local-cache-size", overlimit.DefaultSize, "how many denied keys to answer locally until their Retry-After, sparing the store (0 turns the cache off)")
	f.DurationVar(&cfg.LocalCacheMaxAge, "local-cache-max-age", defaultLocalCacheMaxAge, "longest the local cache answers one denial: bounds how long a refund or reset through another instance goes unseen (0: until Retry-After)")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "how long to let in-flight requests finish on shutdown")
	f.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	return cmd
}

// envName is the environment variable of a flag: TOLLGATE_CHECK_TIMEOUT for
// check-timeout.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets each flag not given on the command line from its
// environment variable, if set.
func applyEnv(f *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	if lookupEnv == nil {
		return nil
	}
	var err error
	f.VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed || fl.Name == "help" {
			return
		}
		name := envName(fl.Name)
		v, ok := lookupEnv(name)
		if !ok {
			return
		}
		if serr := f.Set(fl.Name, v); serr != nil {
			err = fmt.Errorf("invalid %s %q: %w", name, v, serr)
		}
	})
	return err
}

// applyFile sets each flag given neither on the command line nor in the
// environment from the config file's server section, where set there.
func applyFile(f *pflag.FlagSet, s config.Server) error {
	dur := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	nonzero := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	pairs := func(m map[string]string) string {
		var kv []string
		for k, v := range m {
			kv = append(kv, k+"="+v)
		}
		slices.Sort(kv)
		return strings.Join(kv, ",")
	}
	yes := func(b bool) string {
		if b {
			return "true"
		}
		return ""
	}
	positive := func(n int) string {
		if n <= 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	for _, v := range []struct{ flag, value string }{
		{"listen", s.Listen},
		{"grpc-listen", s.GRPCListen},
		{"envoy-config", s.EnvoyConfig},
		{"redis", s.Redis},
		{"redis-cluster", strings.Join(s.RedisCluster, ",")},
		{"redis-username", s.RedisUsername},
		{"redis-password-file", s.RedisPasswordFile},
		{"redis-tls", yes(s.RedisTLS)},
		{"redis-tls-ca-file", s.RedisTLSCAFile},
		{"redis-tls-cert-file", s.RedisTLSCertFile},
		{"redis-tls-key-file", s.RedisTLSKeyFile},
		{"redis-tls-server-name", s.RedisTLSServerName},
		{"redis-tls-insecure-skip-verify", yes(s.RedisTLSInsecureSkipVerify)},
		{"redis-address-map", pairs(s.RedisAddressMap)},
		{"redis-dial-timeout", dur(s.RedisDialTimeout)},
		{"redis-conn-timeout", dur(s.RedisConnTimeout)},
		{"redis-attempt-timeout", dur(s.RedisAttemptTimeout)},
		{"redis-retries", nonzero(s.RedisRetries)},
		{"redis-conns-per-node", positive(s.RedisConnsPerNode)},
		{"redis-wait-replicas", positive(s.RedisWaitReplicas)},
		{"check-timeout", dur(s.CheckTimeout)},
		{"api-token-file", s.APITokenFile},
		{"admin-token-file", s.AdminTokenFile},
		{"reload-interval", dur(s.ReloadInterval)},
		{"shutdown-timeout", dur(s.ShutdownTimeout)},
		{"log-level", s.LogLevel},
		{"local-cache-size", positive(s.LocalCacheSize)},
		{"local-cache-max-age", dur(s.LocalCacheMaxAge)},
	} {
		if v.value == "" || f.Changed(v.flag) {
			continue
		}
		if err := f.Set(v.flag, v.value); err != nil {
			return fmt.Errorf("--config: server: %s %q: %w", strings.ReplaceAll(v.flag, "-", "_"), v.value, err)
		}
	}
	return nil
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
