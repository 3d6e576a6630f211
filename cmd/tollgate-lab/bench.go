package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/internal/service"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/settings"
)

// Defaults of bench flags.
const (
	defaultBenchUnits  = 1_000_000 // per window: every check allowed unless --limit says otherwise
	defaultBenchWindow = time.Hour
	// defaultBenchCountDuration bounds a run given --count without
	// --duration: long enough not to cut a large count short, but bounded.
	defaultBenchCountDuration = 10 * time.Minute
)

// benchConfig is what `tollgate-lab bench` runs with.
type benchConfig struct {
	// Store selects the library's store (memory when Redis names none), as
	// for serve: the Redis and TLS settings.
	Store settings.Settings
	// HTTP is the base URL of a running service's HTTP API; GRPC the
	// HOST:PORT of its Envoy rate limit service. At most one target.
	HTTP, GRPC string
	// TokenFile is a file of bearer tokens for HTTP; the first is sent.
	TokenFile string
	// H2C speaks HTTP/2 without TLS to HTTP.
	H2C bool
	// HTTPBatch is the checks per request of HTTP (one value), or the
	// batch sizes of the extra rows of --compare=http (POST /v1/batch).
	HTTPBatch []int
	// GRPCDomain and GRPCDescriptorKey shape the gRPC requests.
	GRPCDomain, GRPCDescriptorKey string
	// AllowRemote lets targets off loopback be loaded.
	AllowRemote bool

	// Load is the load of every run.
	Load bench.Config
	// Cost is Load.Cost as given.
	Cost string
	// Units, Window and Algorithm make the limit checked.
	Units     int64
	Window    time.Duration
	Algorithm string
	// Limits, when set (bench.ParseLimits), are checked together instead.
	Limits string

	// Compare are the comparisons run after Tollgate (bench.ParseEntries:
	// entries and groups; --compare alone is bench.GroupBaselines, which
	// runs on Redis only); RedisBenchmark is the redis-benchmark binary (""
	// looks in PATH).
	Compare        []string
	RedisBenchmark string
	// Rounds runs the comparison's rows in turn this many times
	// (bench.Comparison.Rounds); 0 means once.
	Rounds int

	// JSON prints the report as JSON; Progress shows progress bars on
	// stderr.
	JSON, Progress bool
	// PrintEnvoyConfig prints the Envoy config the gRPC target needs and
	// exits.
	PrintEnvoyConfig bool
}

func newBenchCmd() *cobra.Command {
	var (
		cfg        benchConfig
		noProgress bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure checks per second, outcomes and latency of Tollgate (and its alternatives)",
		Long: `Drive Tollgate with many concurrent callers and print checks/s, allowed and
denied checks, latency quantiles (p50, p90, p99, p99.9, each within 0.4%)
and errors by kind, as a table or, with --json, one JSON object.

Targets: the library in process over the memory store (default) or Redis
(--redis, --redis-cluster and the TLS flags, as for serve); or a running
service over HTTP (--http URL, POST /v1/consume with an inline limit) or
gRPC (--grpc HOST:PORT, Envoy RLS; the service needs the rule that
--print-envoy-config prints, and its limit applies, not --limit).
--http-batch N sends N checks per HTTP request (POST /v1/batch) instead:
figures stay per check (checks/s counts each), each check's latency is
its request's, and each caller has N checks in flight.

By default the load is closed-loop: each caller sends its next check when
it has an answer, which measures saturated throughput. --rate N makes it
open-loop: N checks per second on a fixed schedule, at most --concurrency
in flight, each latency measured from the check's scheduled start, so that
a stall counts for every check it delayed (no coordinated omission, as in
wrk2 and vegeta); the report gives the offered and the achieved rate.
--compare=latency adds, at the same rate, the floor (one trivial round
trip, EVALSHA of "return 1", on a client with the store's options) and the
seed's pattern. Pick a rate below saturation (e.g. half of a closed-loop
run's checks/s): latency at a normal load is what callers feel.

A run stops at --duration, at --count checks, or on Ctrl-C, whichever
comes first, and always prints its report. Each key is a fresh one, and a
library or HTTP run resets its keys afterwards (over HTTP by POST
/v1/reset, which needs an admin token when the service has tokens), unless
--keep-keys.

--compare (library targets) then runs, with the same load on the same
store, more rows, each shown as a ratio to Tollgate's. --compare alone (or
--compare=baselines; Redis stores only) runs the alternatives a user would
pick: the seed's sorted-set pattern (two transactions per check, one member
per unit), go-redis/redis_rate (GCRA), and redis-benchmark running
Tollgate's own script by EVALSHA, unpipelined and 16 deep (the ceiling,
when redis-benchmark is installed). --compare=http starts the service
(as tollgate serve, with its defaults) on 127.0.0.1 on the same store and
checks through its HTTP API; with --http-batch N,M,… it adds a row
http-batch-N per size, each through a service of its own. --compare=deny
checks keys filled to their limit (the largest cost per window), every
check denied: answered by the store (deny-store), then by the service's
local over-limit cache (deny-cached, its ratios to deny-store). Entries: http, seed, redis_rate,
redis-benchmark, deny, floor; groups: baselines, latency (floor and seed),
all; comma-separated, with "=".
Compare ratios from one invocation, not figures across runs: they move
with whatever else runs on the machine.

A benchmark is load: targets must be on loopback (127.0.0.0/8, ::1,
localhost), including every node a cluster announces, unless
--allow-remote says the load is meant for that deployment.

Unlike serve, bench reads no TOLLGATE_* environment variables: it loads
only what its command line names.`,
		Example: `  tollgate-lab bench
  tollgate-lab bench --redis-cluster 127.0.0.11:7000 --compare --duration 5s
  tollgate-lab bench --redis-cluster 127.0.0.11:7000 --compare=all --json
  tollgate-lab bench --compare=http,deny
  tollgate-lab bench --redis-cluster 127.0.0.11:7000 --rate 8000 --compare=latency --duration 10s
  tollgate-lab bench --http http://127.0.0.1:8080 --cost 1-10 --limit 100 --window 1m --keys 1000
  tollgate-lab bench --http http://127.0.0.1:8080 --http-batch 32
  tollgate-lab bench --compare=http --http-batch 10,32 --duration 8s
  tollgate-lab bench --print-envoy-config > bench.yaml  # then: tollgate serve --grpc-listen 127.0.0.1:8081 --envoy-config bench.yaml
  tollgate-lab bench --grpc 127.0.0.1:8081 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if f.Changed("count") && !f.Changed("duration") {
				cfg.Load.Duration = defaultBenchCountDuration
			}
			cfg.Progress = !noProgress && isTerminal(cmd.ErrOrStderr())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			context.AfterFunc(ctx, stop) // a second Ctrl-C kills at once
			return runBench(ctx, cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	cfg.Store = settings.Default()
	cfg.Store.AddFlags(f, "Redis", "TLS")
	f.StringVar(&cfg.HTTP, "http", "", "benchmark a running service's HTTP API at this base `URL` (http://127.0.0.1:8080)")
	f.BoolVar(&cfg.H2C, "http-h2c", false, "speak HTTP/2 without TLS to --http (every caller over one connection) instead of HTTP/1.1")
	f.IntSliceVar(&cfg.HTTPBatch, "http-batch", nil, "send `N` checks per HTTP request (POST /v1/batch, 1 to 100) with --http; with --compare=http, a row http-batch-N for each N of a comma-separated list")
	f.StringVar(&cfg.TokenFile, "token-file", "", "`file` of bearer tokens (as serve's --api-token-file); the first is sent with --http")
	f.StringVar(&cfg.GRPC, "grpc", "", "benchmark a running service's Envoy rate limit service at `HOST:PORT`")
	f.StringVar(&cfg.GRPCDomain, "grpc-domain", bench.DefaultDomain, "rate limit `domain` of the --grpc requests")
	f.StringVar(&cfg.GRPCDescriptorKey, "grpc-descriptor-key", bench.DefaultDescriptorKey, "descriptor `key` of the --grpc requests; its value is the bench key")
	f.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow targets that are not on loopback: the benchmark's load goes there")
	f.IntVar(&cfg.Load.Keys, "keys", bench.DefaultKeys, "how many distinct keys the checks spread over, at random")
	f.IntVar(&cfg.Load.Concurrency, "concurrency", bench.DefaultConcurrency, "how many callers check at once")
	f.DurationVar(&cfg.Load.Duration, "duration", bench.DefaultDuration, "longest a run lasts (with --count and no --duration: 10m)")
	f.Int64Var(&cfg.Load.Count, "count", 0, "most checks a run makes (0: no bound but --duration)")
	f.Float64Var(&cfg.Load.Rate, "rate", 0, "open loop: send `N` checks per second on a fixed schedule, latency from each check's scheduled start, at most --concurrency in flight (0: closed loop)")
	f.StringVar(&cfg.Cost, "cost", "1", "cost of each check: `N`, MIN-MAX (uniform) or COST:WEIGHT,... (e.g. 1:90,10:10)")
	f.DurationVar(&cfg.Load.CheckTimeout, "check-timeout", bench.DefaultCheckTimeout, "longest wait for one check; past it the check counts as an error of kind timeout")
	f.Int64Var(&cfg.Units, "limit", defaultBenchUnits, "`units` per window of the limit checked (the default lets every check through)")
	f.DurationVar(&cfg.Window, "window", defaultBenchWindow, "window of the limit checked")
	f.StringVar(&cfg.Algorithm, "algorithm", tollgate.SlidingLog.String(), "algorithm of the limit checked: sliding_log, sliding_window or gcra")
	f.StringVar(&cfg.Limits, "limits", "", "check several limits of each key together, instead of --limit, --window and --algorithm: `UNITS/WINDOW[/ALGORITHM],…` (e.g. 10/1s/gcra,1000/1h,20000/24h/sliding_window); library and --http targets")
	f.StringSliceVar(&cfg.Compare, "compare", nil, "also run, as ratios to Tollgate: alone, the seed's pattern, go-redis/redis_rate and redis-benchmark on the same Redis; "+
		"=`LIST` of floor, http, seed, redis_rate, redis-benchmark, deny, baselines, latency, all")
	f.Lookup("compare").NoOptDefVal = bench.GroupBaselines
	f.IntVar(&cfg.Rounds, "rounds", 1, "with --compare, run the rows in turn `N` times, each for --duration/N (and --count/N), and merge each row's rounds, so that a slow spell of a shared machine falls on every row alike")
	f.StringVar(&cfg.RedisBenchmark, "redis-benchmark", "", "redis-benchmark `binary` for --compare (default: from PATH; skipped when missing)")
	f.BoolVar(&cfg.Load.KeepKeys, "keep-keys", false, "leave the keys' state in the store (by default the library, HTTP and baseline runs reset their keys)")
	f.BoolVar(&cfg.JSON, "json", false, "print the report as one JSON object")
	f.BoolVar(&noProgress, "no-progress", false, "show no progress bar (none is shown when stderr is not a terminal)")
	f.BoolVar(&cfg.PrintEnvoyConfig, "print-envoy-config", false, "print the Envoy config a service needs for --grpc (with --limit, --window, --algorithm, --grpc-domain and --grpc-descriptor-key) and exit")
	return cmd
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// limits returns the limits --limits names (nil without it), checked with
// cost and the other flags.
func (c benchConfig) limits(cost bench.Cost) ([]tollgate.Limit, error) {
	if c.Limits == "" {
		return nil, nil
	}
	limits, err := bench.ParseLimits(c.Limits)
	if err != nil {
		return nil, fmt.Errorf("--limits: %w", err)
	}
	switch {
	case c.GRPC != "" || c.PrintEnvoyConfig:
		return nil, errors.New("--limits is for the library and --http targets; Envoy rules name their own limits")
	case len(c.Compare) > 0:
		return nil, errors.New("--limits and --compare: the comparisons check one limit")
	}
	for _, l := range limits {
		if cost.Max() > l.Units {
			return nil, fmt.Errorf("--cost up to %d exceeds the limit %s: such checks could never be allowed", cost.Max(), l)
		}
	}
	return limits, nil
}

// validate checks cfg and returns the limit and cost it makes.
func (c benchConfig) validate() (tollgate.Limit, bench.Cost, error) {
	alg, err := tollgate.ParseAlgorithm(c.Algorithm)
	if err != nil {
		return tollgate.Limit{}, bench.Cost{}, fmt.Errorf("--algorithm: %w", err)
	}
	limit := tollgate.Limit{Units: c.Units, Window: c.Window, Algorithm: alg}
	if err := limit.Validate(); err != nil {
		return limit, bench.Cost{}, fmt.Errorf("--limit, --window: %w", err)
	}
	cost, err := bench.ParseCost(c.Cost)
	if err != nil {
		return limit, cost, fmt.Errorf("--cost: %w", err)
	}
	l := c.Load
	switch {
	case l.Keys < 1 || l.Keys > bench.MaxKeys:
		return limit, cost, fmt.Errorf("--keys %d: want 1 to %d", l.Keys, bench.MaxKeys)
	case l.Concurrency < 1 || l.Concurrency > bench.MaxConcurrency:
		return limit, cost, fmt.Errorf("--concurrency %d: want 1 to %d", l.Concurrency, bench.MaxConcurrency)
	case l.Duration <= 0 || l.Duration > bench.MaxDuration:
		return limit, cost, fmt.Errorf("--duration %s: want more than 0, at most %s", l.Duration, bench.MaxDuration)
	case l.Count < 0:
		return limit, cost, fmt.Errorf("--count %d: must not be negative", l.Count)
	case l.CheckTimeout <= 0:
		return limit, cost, fmt.Errorf("--check-timeout %s: must be positive", l.CheckTimeout)
	case l.Rate < 0 || l.Rate > bench.MaxRate || math.IsNaN(l.Rate):
		return limit, cost, fmt.Errorf("--rate %v: want 0 (closed loop) to %d", l.Rate, int(bench.MaxRate))
	case c.Rounds < 0 || c.Rounds > bench.MaxRounds:
		return limit, cost, fmt.Errorf("--rounds %d: want 1 to %d", c.Rounds, bench.MaxRounds)
	case c.Rounds > 1 && len(c.Compare) == 0:
		return limit, cost, errors.New("--rounds needs --compare: it interleaves a comparison's rows")
	}
	if c.PrintEnvoyConfig {
		return limit, cost, nil
	}
	for _, n := range c.HTTPBatch {
		if n < 1 || n > httpapi.DefaultMaxBatchChecks {
			return limit, cost, fmt.Errorf("--http-batch %d: want 1 to %d checks per request (the service's bound)", n, httpapi.DefaultMaxBatchChecks)
		}
	}
	targets := 0
	for _, set := range []bool{c.HTTP != "", c.GRPC != "", c.Store.Redis.Kind() != "memory"} {
		if set {
			targets++
		}
	}
	switch {
	case targets > 1:
		return limit, cost, errors.New("--http, --grpc and --redis/--redis-cluster are mutually exclusive: give one target")
	case c.TokenFile != "" && c.HTTP == "":
		return limit, cost, errors.New("--token-file needs --http")
	case len(c.HTTPBatch) > 0 && c.HTTP == "" && len(c.Compare) == 0:
		return limit, cost, errors.New("--http-batch needs --http or --compare=http")
	case len(c.HTTPBatch) > 1 && c.HTTP != "":
		return limit, cost, errors.New("--http-batch with --http: one batch size (a list is for --compare=http)")
	case len(c.Compare) > 0 && (c.HTTP != "" || c.GRPC != ""):
		return limit, cost, errors.New("--compare needs the library target (--redis, --redis-cluster or the memory store), not --http or --grpc")
	case c.GRPC == "" && cost.Max() > limit.Units:
		return limit, cost, fmt.Errorf("--cost up to %d exceeds --limit %d: such checks could never be allowed", cost.Max(), limit.Units)
	}
	if len(c.Compare) > 0 {
		entries, err := bench.ParseEntries(c.Compare)
		if err != nil {
			return limit, cost, fmt.Errorf("--compare: %w", err)
		}
		if len(c.HTTPBatch) > 0 && !slices.Contains(entries, bench.EntryHTTP) {
			return limit, cost, errors.New("--http-batch needs --http or --compare=http")
		}
		for _, e := range entries {
			if bench.NeedsRedis(e) && c.Store.Redis.Kind() == "memory" {
				return limit, cost, fmt.Errorf("--compare needs --redis or --redis-cluster: the baselines run on Redis (%s)", e)
			}
		}
	}
	if err := c.Store.ValidateStore(); err != nil {
		return limit, cost, err
	}
	if c.AllowRemote {
		return limit, cost, nil
	}
	if c.HTTP != "" {
		if err := bench.CheckLoopbackURL(c.HTTP); err != nil {
			return limit, cost, fmt.Errorf("--http %w", err)
		}
	}
	if c.GRPC != "" {
		if err := bench.CheckLoopbackAddr(c.GRPC); err != nil {
			return limit, cost, fmt.Errorf("--grpc %w", err)
		}
	}
	for _, a := range append([]string{c.Store.Redis.Addr}, c.Store.Redis.Cluster...) {
		if a == "" {
			continue
		}
		if err := bench.CheckLoopbackAddr(a); err != nil {
			return limit, cost, fmt.Errorf("--%s %w", c.Store.Redis.Kind(), err)
		}
	}
	return limit, cost, nil
}

// runBench runs the benchmark cfg describes and prints its report on
// stdout; progress goes to stderr.
func runBench(ctx context.Context, cfg benchConfig, stdout, stderr io.Writer) error {
	limit, cost, err := cfg.validate()
	if err != nil {
		return err
	}
	limits, err := cfg.limits(cost)
	if err != nil {
		return err
	}
	if cfg.PrintEnvoyConfig {
		_, err := io.WriteString(stdout, bench.EnvoyConfig(cfg.GRPCDomain, cfg.GRPCDescriptorKey, limit))
		return err
	}
	load := cfg.Load
	load.Cost = cost
	bars := &progressBars{w: stderr}
	if cfg.Progress {
		load.Progress = bars.update
	}

	report := bench.Report{Setup: bench.Setup{
		Units: limit.Units, Window: limit.Window, Algorithm: limit.Algorithm.String(), Cost: cost.String(),
		Keys: load.Keys, Concurrency: load.Concurrency, Rate: load.Rate, MaxChecks: load.Count, MaxDuration: load.Duration,
		Limits: limits,
	}}
	target, store, closeTarget, err := openBenchTarget(ctx, cfg, limit, limits, &report.Setup)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeTarget(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", report.Setup.Target, cerr)
		}
	}()

	if len(cfg.Compare) > 0 {
		entries, err := bench.ParseEntries(cfg.Compare)
		if err != nil {
			return err
		}
		if cfg.Rounds > 1 {
			report.Setup.Rounds = cfg.Rounds
		}
		cmp := bench.Comparison{Config: load, Entries: entries, Limit: limit, RedisBenchmark: cfg.RedisBenchmark, Rounds: cfg.Rounds,
			HTTP: func(ctx context.Context, batch int) (bench.Target, func() error, error) {
				return startBenchService(ctx, store, limit, load.Concurrency, batch)
			},
			HTTPBatches: cfg.compareBatches(),
			Deny:        func(cached bool) *tollgate.Limiter { return benchServiceLimiter(store, cached) },
		}
		if cfg.Store.Redis.Kind() != "memory" {
			if cmp.Redis, err = service.RedisOptions(cfg.Store.Redis, cfg.Store.TLS, nil, nil); err != nil {
				return err
			}
		}
		if cfg.Progress {
			cmp.Status = func(name string) {
				if strings.HasPrefix(name, bench.NameRedisBenchmark) {
					fmt.Fprintf(stderr, "%s: running (no progress shown) …\n", name)
				}
			}
		}
		report.Rows, err = cmp.Run(ctx, target)
	} else {
		if store != nil && cfg.Store.Redis.Kind() != "memory" {
			// Redis CPU per check too; without it the row just lacks it.
			if ropts, oerr := service.RedisOptions(cfg.Store.Redis, cfg.Store.TLS, nil, nil); oerr == nil {
				if cpu, closeCPU, cerr := bench.RedisCPU(ropts); cerr == nil {
					defer closeCPU()
					load.ServerCPU = cpu
				}
			}
		}
		var row bench.Row
		row, err = bench.Run(ctx, bench.NameTollgate, target, load)
		report.Rows = []bench.Row{row}
	}
	if err != nil {
		return err
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	_, err = io.WriteString(stdout, report.String())
	return err
}

// openBenchTarget opens Tollgate's target and fills in setup's target
// fields. For the library it also returns the store (nil otherwise).
func openBenchTarget(ctx context.Context, cfg benchConfig, limit tollgate.Limit, limits []tollgate.Limit, setup *bench.Setup) (bench.Target, tollgate.Store, func() error, error) {
	switch {
	case cfg.HTTP != "":
		setup.Target, setup.Addr = "http", cfg.HTTP
		toks, err := service.LoadTokens(cfg.TokenFile, "--token-file", slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, nil, nil, err
		}
		opts := bench.HTTPOptions{Conns: cfg.Load.Concurrency, Limits: limits, H2C: cfg.H2C}
		if len(cfg.HTTPBatch) == 1 {
			opts.Batch = cfg.HTTPBatch[0]
		}
		if len(toks) > 0 {
			opts.Token = toks[0]
		}
		h, err := bench.NewHTTP(cfg.HTTP, limit, opts)
		if err != nil {
			return nil, nil, nil, err
		}
		return h, nil, h.Close, nil
	case cfg.GRPC != "":
		setup.Target, setup.Addr = "grpc", cfg.GRPC
		setup.Units, setup.Window, setup.Algorithm = 0, 0, "" // the service's rule applies
		g, err := bench.NewGRPC(cfg.GRPC, cfg.GRPCDomain, cfg.GRPCDescriptorKey)
		if err != nil {
			return nil, nil, nil, err
		}
		return g, nil, g.Close, nil
	}
	setup.Target, setup.Store = "library", cfg.Store.Redis.Kind()
	if setup.Store != "memory" {
		setup.Addr = strings.Join(cfg.redisAddrs(), ",")
		if !cfg.AllowRemote {
			// The seeds are on loopback; so must be every node they announce.
			ropts, err := service.RedisOptions(cfg.Store.Redis, cfg.Store.TLS, nil, nil)
			if err != nil {
				return nil, nil, nil, err
			}
			nodes, err := bench.NodeAddrs(ctx, ropts)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("open %s store: %w", setup.Store, err)
			}
			for _, a := range nodes {
				if err := bench.CheckLoopbackAddr(a); err != nil {
					return nil, nil, nil, fmt.Errorf("--%s: node %w", setup.Store, err)
				}
			}
		}
	}
	st, _, closeStore, err := service.OpenStore(ctx, cfg.Store.Redis, cfg.Store.TLS, nil, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open %s store: %w", setup.Store, err)
	}
	return bench.Library{Limiter: tollgate.New(st, tollgate.Options{}), Limit: limit, Limits: limits}, st, closeStore, nil
}

// compareBatches returns the batch sizes of --compare=http's extra rows:
// --http-batch without 1 (the http row) and repeats.
func (c benchConfig) compareBatches() []int {
	var out []int
	for _, n := range c.HTTPBatch {
		if n > 1 && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// startBenchService starts the service in process (service.Run, with
// serve's defaults) on store, listening on a free port of 127.0.0.1, and
// returns the Target of its HTTP API, checking limit over conns
// connections with batch checks per request, and a function that stops
// it. The store is not closed.
func startBenchService(ctx context.Context, store tollgate.Store, limit tollgate.Limit, conns, batch int) (bench.Target, func() error, error) {
	cfg := service.Config{Settings: settings.Default(), Store: store}
	cfg.HTTP.Listen = "127.0.0.1:0"
	listening := make(chan net.Addr, 1)
	cfg.OnListening = func(h, _ net.Addr) { listening <- h }
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- service.Run(sctx, cfg, nil) }()
	var addr net.Addr
	select {
	case addr = <-listening:
	case err := <-done:
		cancel()
		return nil, nil, fmt.Errorf("start the service: %w", err)
	}
	stop := func() error {
		cancel()
		return <-done
	}
	h, err := bench.NewHTTP("http://"+addr.String(), limit, bench.HTTPOptions{Conns: conns, Batch: batch})
	if err != nil {
		return nil, nil, errors.Join(err, stop())
	}
	return h, func() error { return errors.Join(h.Close(), stop()) }, nil
}

// benchServiceLimiter returns a Limiter on store wrapped as serve wraps it
// with its defaults (service.WrapStore), with the local over-limit cache
// when cached, and without it otherwise.
func benchServiceLimiter(store tollgate.Store, cached bool) *tollgate.Limiter {
	s := settings.Default()
	if !cached {
		s.Cache.Size = 0
	}
	return tollgate.New(service.WrapStore(store, s, metrics.New()), tollgate.Options{})
}

// redisAddrs returns the Redis addresses given.
func (c benchConfig) redisAddrs() []string {
	if c.Store.Redis.Addr != "" {
		return []string{c.Store.Redis.Addr}
	}
	return c.Store.Redis.Cluster
}

// progressBars shows a progress bar per run on w.
type progressBars struct {
	w    io.Writer
	bar  *progressbar.ProgressBar
	name string
}

func (p *progressBars) update(pr bench.Progress) {
	if p.bar == nil || pr.Name != p.name {
		p.name = pr.Name
		p.bar = progressbar.NewOptions64(1000,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
		)
	}
	rate := float64(pr.Checks) / max(pr.Elapsed.Seconds(), 1e-9)
	p.bar.Describe(fmt.Sprintf("%-15s %d checks, %.0f/s", pr.Name, pr.Checks, rate))
	_ = p.bar.Set64(int64(pr.Fraction * 1000))
	if pr.Done {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
		p.bar = nil
	}
}
