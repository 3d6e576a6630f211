package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/redis"
)

// Row names of a comparison.
const (
	NameTollgate          = "tollgate"
	NameHTTP              = "http"
	NameSeed              = "seed"
	NameRedisRate         = "redis_rate"
	NameRedisBenchmark    = "redis-benchmark"     // -P 1
	NameRedisBenchmarkP16 = "redis-benchmark-P16" // -P 16
	NameDenyStore         = "deny-store"
	NameDenyCached        = "deny-cached"
	NameFloor             = "floor"
)

// Entries of a comparison (Comparison.Entries): what runs after Tollgate.
const (
	// EntryHTTP: the HTTP API of a service on Tollgate's store
	// (Comparison.HTTP), row NameHTTP, then a row HTTPBatchName(n) for
	// each of Comparison.HTTPBatches.
	EntryHTTP = "http"
	// EntrySeed, EntryRedisRate: the baselines on the same Redis, rows
	// NameSeed and NameRedisRate.
	EntrySeed      = "seed"
	EntryRedisRate = "redis_rate"
	// EntryRedisBenchmark: redis-benchmark running Tollgate's script, the
	// ceiling, unpipelined and 16 deep: rows NameRedisBenchmark and
	// NameRedisBenchmarkP16.
	EntryRedisBenchmark = "redis-benchmark"
	// EntryDeny: denied checks answered by the store (NameDenyStore) and by
	// the service's local over-limit cache (NameDenyCached), through
	// Comparison.Deny.
	EntryDeny = "deny"
	// EntryFloor: the physical floor, one trivial round trip per check
	// (EVALSHA of "return 1" on the check's key) on a client with the
	// store's options (Floor), row NameFloor.
	EntryFloor = "floor"
)

// HTTPBatchName names the row of the HTTP API with n checks per request
// (POST /v1/batch): "http-batch-N".
func HTTPBatchName(n int) string { return NameHTTP + "-batch-" + strconv.Itoa(n) }

// Groups of entries ParseEntries knows.
const (
	// GroupBaselines is what --compare alone runs: seed, redis_rate and
	// redis-benchmark.
	GroupBaselines = "baselines"
	// GroupLatency is what an open-loop latency run (Config.Rate) compares
	// with: the floor and the seed's pattern at the same rate.
	GroupLatency = "latency"
	// GroupAll is every entry.
	GroupAll = "all"
)

// entryOrder is the order entries run in.
var entryOrder = []string{EntryFloor, EntryHTTP, EntrySeed, EntryRedisRate, EntryRedisBenchmark, EntryDeny}

// ParseEntries expands entry and group names (case-insensitive, blank ones
// ignored) into entries, in the order they run, each once.
func ParseEntries(names []string) ([]string, error) {
	want := map[string]bool{}
	for _, n := range names {
		switch n = strings.ToLower(strings.TrimSpace(n)); n {
		case "":
		case GroupBaselines:
			want[EntrySeed], want[EntryRedisRate], want[EntryRedisBenchmark] = true, true, true
		case GroupLatency:
			want[EntryFloor], want[EntrySeed] = true, true
		case GroupAll:
			for _, e := range entryOrder {
				want[e] = true
			}
		default:
			if !slices.Contains(entryOrder, n) {
				return nil, fmt.Errorf("unknown comparison %q: want %s, %s, %s or %s", n,
					strings.Join(entryOrder, ", "), GroupBaselines, GroupLatency, GroupAll)
			}
			want[n] = true
		}
	}
	var out []string
	for _, e := range entryOrder {
		if want[e] {
			out = append(out, e)
		}
	}
	return out, nil
}

// NeedsRedis reports whether entry runs on Redis only (the baselines);
// EntryHTTP and EntryDeny run on any store.
func NeedsRedis(entry string) bool {
	return entry == EntrySeed || entry == EntryRedisRate || entry == EntryRedisBenchmark || entry == EntryFloor
}

// Comparison runs Tollgate and its baselines with the same load on the same
// store, one after another, in this order (each entry only when in
// Entries):
//
//   - tollgate: the Target given to Run (the library in process);
//   - floor: one trivial round trip per check (Floor), on a client with the
//     store's options: what no check on Redis can beat;
//   - http: the same checks through a service's HTTP API on the same store
//     (HTTP), as `tollgate serve` answers them; then http-batch-N, the
//     same with N checks per request (POST /v1/batch), for each N of
//     HTTPBatches;
//   - seed: the seed's pattern on the same client library and options
//     (Seed), which only knows the sliding log;
//   - redis_rate: go-redis/redis_rate (RedisRate), which only knows GCRA;
//   - redis-benchmark, redis-benchmark-P16: Tollgate's script of the
//     limit's algorithm by EVALSHA (Ceiling), the ceiling, when
//     redis-benchmark is installed, without pipelining and 16 calls deep;
//     as many requests as Tollgate's run answered, as many connections as
//     callers, and the cost when it is fixed (else the mean, rounded);
//   - deny-store, deny-cached: checks of keys over their limit (a limit of
//     the largest cost per window, each key filled to it before the run,
//     so that every check is denied) through the Limiter Deny returns:
//     answered by the store, then by the service's local over-limit cache.
//     deny-cached's ratios are to deny-store.
//
// Each run of a Target uses fresh keys and resets them afterwards. With
// Redis set, every row also has the CPU time per check of all Redis nodes
// (Row.ServerCPU, from INFO cpu before and after its load).
type Comparison struct {
	// Config is the load of every run.
	Config Config
	// Entries are the entries run after Tollgate (ParseEntries); nil means
	// GroupBaselines.
	Entries []string
	// Redis is the deployment the baselines connect to: Tollgate's.
	Redis redis.Options
	// Limit is Tollgate's limit; the baselines get its Units and Window.
	Limit tollgate.Limit
	// HTTP, for EntryHTTP, starts a service on Tollgate's store and returns
	// the Target of its HTTP API (checking Limit, batch checks per
	// request) and a function that stops it. Without it the rows are
	// skipped.
	HTTP func(ctx context.Context, batch int) (Target, func() error, error)
	// HTTPBatches are the batch sizes (above 1) of the rows EntryHTTP runs
	// after NameHTTP's, each through a service of its own.
	HTTPBatches []int
	// Deny, for EntryDeny, returns a Limiter on Tollgate's store wrapped as
	// the service wraps it, with the service's local over-limit cache when
	// cached. Without it the rows are skipped.
	Deny func(cached bool) *tollgate.Limiter
	// RedisBenchmark is the redis-benchmark binary; "" looks it up in
	// PATH, and the row is skipped when it is not there.
	RedisBenchmark string
	// CeilingTimeout bounds each redis-benchmark run; 0 means four times
	// Tollgate's run, at least 30 s.
	CeilingTimeout time.Duration
	// Rounds, when above 1, runs the rows in turn that many times, each
	// for Config.Duration/Rounds (and Config.Count/Rounds checks), and
	// merges each row's rounds into one (mergeRounds): a slow spell of a
	// shared machine then falls on every row alike, not on whichever row
	// ran during it. 0 or 1 means one round.
	Rounds int
	// Status, when not nil, is told when each row starts (for a message
	// where Progress cannot show one, as for redis-benchmark).
	Status func(name string)
}

// Run runs the comparison with tollgate as Tollgate's Target and returns the
// report's rows with ratios to Tollgate's. A baseline that cannot connect
// or run is skipped, with the reason in its row. Cancelling ctx stops the
// run in progress (its row is kept) and skips the rest.
func (c Comparison) Run(ctx context.Context, tollgateTarget Target) ([]Row, error) {
	status := func(name string) {
		if c.Status != nil {
			c.Status(name)
		}
	}
	cfg, err := c.Config.normalize()
	if err != nil {
		return nil, err
	}
	if len(c.Redis.Addrs) > 0 {
		if sc, err := newServerCPU(c.Redis); err == nil {
			defer sc.close()
			cfg.ServerCPU = sc.total
		}
	}
	entries := c.Entries
	if entries == nil {
		entries = []string{GroupBaselines}
	}
	if entries, err = ParseEntries(entries); err != nil {
		return nil, err
	}
	if c.Rounds < 0 || c.Rounds > MaxRounds {
		return nil, fmt.Errorf("bench: rounds %d out of range [0, %d]", c.Rounds, MaxRounds)
	}
	rounds := max(c.Rounds, 1)
	if rounds > 1 {
		cfg.Duration /= time.Duration(rounds)
		if cfg.Count > 0 {
			cfg.Count = max(cfg.Count/int64(rounds), 1)
		}
	}
	var all [][]Row
	for range rounds {
		rows, err := c.round(ctx, cfg, entries, tollgateTarget, status)
		if err != nil {
			return nil, err
		}
		all = append(all, rows)
		if ctx.Err() != nil {
			break
		}
	}
	r := Report{Rows: mergeRounds(all)}
	r.ComputeRatios()
	return r.Rows, nil
}

// round runs Tollgate's row and then each entry's, once, with cfg's load.
func (c Comparison) round(ctx context.Context, cfg Config, entries []string, tollgateTarget Target, status func(string)) ([]Row, error) {
	freshPrefix := func(name string) string { return c.Config.KeyPrefix + name + "-" + runID() + "-" }
	run := func(name string, t Target) (Row, error) {
		status(name)
		cfg := cfg
		cfg.KeyPrefix = freshPrefix(name) // fresh keys for every row
		return Run(ctx, name, t, cfg)
	}
	skipped := func(name, why string) Row { return Row{Name: name, Skipped: why} }

	tg, err := run(NameTollgate, tollgateTarget)
	if err != nil {
		return nil, err
	}
	rows := []Row{tg}

	// runTarget opens a Target, runs it and closes it.
	runTarget := func(name string, open func() (Target, func() error, error)) error {
		if ctx.Err() != nil {
			rows = append(rows, skipped(name, "interrupted"))
			return nil
		}
		t, closeFn, err := open()
		if err != nil {
			rows = append(rows, skipped(name, err.Error()))
			return nil
		}
		row, err := run(name, t)
		if cerr := closeFn(); cerr != nil && row.Note == "" && err == nil {
			row.Note = "close: " + cerr.Error()
		}
		if err != nil {
			return err
		}
		rows = append(rows, row)
		return nil
	}

	for _, e := range entries {
		var err error
		switch e {
		case EntryFloor:
			err = runTarget(NameFloor, func() (Target, func() error, error) {
				f, err := NewFloor(c.Redis)
				if err != nil {
					return nil, nil, err
				}
				return f, f.Close, nil
			})
		case EntryHTTP:
			for _, n := range append([]int{1}, c.HTTPBatches...) {
				name := NameHTTP
				if n > 1 {
					name = HTTPBatchName(n)
				}
				if err = runTarget(name, func() (Target, func() error, error) {
					if c.HTTP == nil {
						return nil, nil, errors.New("no service to start")
					}
					return c.HTTP(ctx, n)
				}); err != nil {
					break
				}
			}
		case EntrySeed:
			err = runTarget(NameSeed, func() (Target, func() error, error) {
				s, err := NewSeed(c.Redis, c.Limit)
				if err != nil {
					return nil, nil, err
				}
				return s, s.Close, nil
			})
		case EntryRedisRate:
			err = runTarget(NameRedisRate, func() (Target, func() error, error) {
				r, err := NewRedisRate(ctx, c.Redis, c.Limit, cfg.Concurrency)
				if err != nil {
					return nil, nil, err
				}
				return r, r.Close, nil
			})
		case EntryRedisBenchmark:
			for _, p := range []struct {
				name  string
				depth int
			}{{NameRedisBenchmark, 1}, {NameRedisBenchmarkP16, 16}} {
				rows = append(rows, c.runCeiling(ctx, cfg, tg, p.name, p.depth, status))
			}
		case EntryDeny:
			for _, d := range []struct {
				name   string
				cached bool
			}{{NameDenyStore, false}, {NameDenyCached, true}} {
				if ctx.Err() != nil {
					rows = append(rows, skipped(d.name, "interrupted"))
					continue
				}
				if c.Deny == nil {
					rows = append(rows, skipped(d.name, "no Limiter for denials"))
					continue
				}
				status(d.name)
				row, err := c.runDeny(ctx, cfg, d.name, freshPrefix(d.name), c.Deny(d.cached))
				if err != nil {
					return nil, err
				}
				if d.cached {
					row.Base = NameDenyStore
				}
				rows = append(rows, row)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// runCeiling runs redis-benchmark pipelined depth deep with Tollgate's
// run's load (tg) and returns its row, named name; skipped when it cannot
// run.
func (c Comparison) runCeiling(ctx context.Context, cfg Config, tg Row, name string, depth int, status func(string)) Row {
	if ctx.Err() != nil {
		return Row{Name: name, Skipped: "interrupted"}
	}
	if cfg.Rate > 0 {
		return Row{Name: name, Skipped: "redis-benchmark has no fixed arrival rate: no open-loop row"}
	}
	status(name)
	cost, ok := cfg.Cost.Fixed()
	if !ok {
		cost = int64(math.Round(cfg.Cost.Mean()))
	}
	timeout := c.CeilingTimeout
	if timeout <= 0 {
		timeout = max(4*tg.Elapsed, 30*time.Second)
	}
	ceil := Ceiling{
		Bin: c.RedisBenchmark, Redis: c.Redis, Limit: c.Limit, Cost: cost, Pipeline: depth, ServerCPU: cfg.ServerCPU,
		Requests: max(tg.Checks, 1), Clients: cfg.Concurrency, Keys: cfg.Keys, Timeout: timeout, KeepKeys: cfg.KeepKeys,
	}
	row, err := ceil.Run(ctx)
	switch {
	case err != nil: // ErrNoRedisBenchmark among others
		return Row{Name: name, Skipped: err.Error()}
	case !ok:
		row.Note = fmt.Sprintf("cost %d for every call (redis-benchmark sends one command), the mean of %s", cost, cfg.Cost)
	}
	row.Name = name
	return row
}

// runDeny fills keys prefix+0 … to a limit of the largest cost per window
// through lim, checks each once more (denied: a local cache now holds the
// denial), then runs cfg's load on them with that limit, so that every
// check is denied. A key that cannot be filled skips the row.
func (c Comparison) runDeny(ctx context.Context, cfg Config, name, prefix string, lim *tollgate.Limiter) (Row, error) {
	limit := tollgate.Limit{Units: cfg.Cost.Max(), Window: c.Limit.Window, Algorithm: c.Limit.Algorithm}
	t := Library{Limiter: lim, Limit: limit}
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	n, err := forEachKey(ctx, keys, cfg.Concurrency, func(ctx context.Context, key string) error {
		if res, err := lim.Consume(ctx, key, limit.Units, limit); err != nil || !res.Allowed {
			return fmt.Errorf("fill %s: allowed %t, %v", key, res.Allowed, err)
		}
		if res, err := lim.Consume(ctx, key, 1, limit); err != nil || res.Allowed {
			return fmt.Errorf("deny %s: allowed %t, %v", key, res.Allowed, err)
		}
		return nil
	})
	if err != nil {
		_, _ = resetKeys(context.WithoutCancel(ctx), t, keys, cfg.Concurrency)
		return Row{Name: name, Skipped: fmt.Sprintf("%d of %d keys not filled: %v", n, len(keys), err)}, nil
	}
	cfg.KeyPrefix = prefix
	row, err := Run(ctx, name, t, cfg)
	if err != nil {
		return row, err
	}
	where := "the store"
	if name == NameDenyCached {
		where = "the local over-limit cache"
	}
	note := fmt.Sprintf("limit %d per %s, keys filled: every check denied, by %s", limit.Units, shortDuration(limit.Window), where)
	if row.Allowed > 0 {
		note = fmt.Sprintf("limit %d per %s, keys filled, denials by %s; %d checks allowed again as the window moved on", limit.Units, shortDuration(limit.Window), where, row.Allowed)
	}
	if row.Note != "" {
		note += "; " + row.Note
	}
	row.Note = note
	return row, nil
}
