package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/redis"
)

// Row names of a comparison.
const (
	NameTollgate       = "tollgate"
	NameSeed           = "seed"
	NameRedisRate      = "redis_rate"
	NameRedisBenchmark = "redis-benchmark"
)

// Comparison runs Tollgate and its baselines with the same load on the same
// Redis deployment, one after another, in this order:
//
//   - tollgate: the Target given to Run (the library on the Redis store);
//   - seed: the seed's pattern on the same client library and options
//     (Seed), which only knows the sliding log;
//   - redis_rate: go-redis/redis_rate (RedisRate), which only knows GCRA;
//   - redis-benchmark: Tollgate's script of the limit's algorithm by
//     EVALSHA (Ceiling), the ceiling, when redis-benchmark is installed;
//     as many requests as Tollgate's run answered, as many connections as
//     callers, and the cost when it is fixed (else the mean, rounded).
//
// Each run of a Target uses fresh keys and resets them afterwards.
type Comparison struct {
	// Config is the load of every run.
	Config Config
	// Redis is the deployment the baselines connect to: Tollgate's.
	Redis redis.Options
	// Limit is Tollgate's limit; the baselines get its Units and Window.
	Limit tollgate.Limit
	// RedisBenchmark is the redis-benchmark binary; "" looks it up in
	// PATH, and the row is skipped when it is not there.
	RedisBenchmark string
	// CeilingTimeout bounds the redis-benchmark run; 0 means four times
	// Tollgate's run, at least 30 s.
	CeilingTimeout time.Duration
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
	run := func(name string, t Target) (Row, error) {
		status(name)
		cfg := cfg
		cfg.KeyPrefix = c.Config.KeyPrefix + name + "-" + runID() + "-" // fresh keys for every row
		return Run(ctx, name, t, cfg)
	}
	skipped := func(name, why string) Row { return Row{Name: name, Skipped: why} }

	tg, err := run(NameTollgate, tollgateTarget)
	if err != nil {
		return nil, err
	}
	rows := []Row{tg}

	baselines := []struct {
		name string
		open func() (Target, func() error, error)
	}{
		{NameSeed, func() (Target, func() error, error) {
			s, err := NewSeed(c.Redis, c.Limit)
			if err != nil {
				return nil, nil, err
			}
			return s, s.Close, nil
		}},
		{NameRedisRate, func() (Target, func() error, error) {
			r, err := NewRedisRate(ctx, c.Redis, c.Limit, cfg.Concurrency)
			if err != nil {
				return nil, nil, err
			}
			return r, r.Close, nil
		}},
	}
	for _, b := range baselines {
		if ctx.Err() != nil {
			rows = append(rows, skipped(b.name, "interrupted"))
			continue
		}
		t, closeFn, err := b.open()
		if err != nil {
			rows = append(rows, skipped(b.name, err.Error()))
			continue
		}
		row, err := run(b.name, t)
		_ = closeFn()
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}

	if ctx.Err() != nil {
		rows = append(rows, skipped(NameRedisBenchmark, "interrupted"))
	} else {
		status(NameRedisBenchmark)
		cost, ok := cfg.Cost.Fixed()
		if !ok {
			cost = int64(math.Round(cfg.Cost.Mean()))
		}
		timeout := c.CeilingTimeout
		if timeout <= 0 {
			timeout = max(4*tg.Elapsed, 30*time.Second)
		}
		ceil := Ceiling{
			Bin: c.RedisBenchmark, Redis: c.Redis, Limit: c.Limit, Cost: cost,
			Requests: max(tg.Checks, 1), Clients: cfg.Concurrency, Keys: cfg.Keys, Timeout: timeout, KeepKeys: cfg.KeepKeys,
		}
		row, err := ceil.Run(ctx)
		switch {
		case err != nil: // ErrNoRedisBenchmark among others
			row = skipped(NameRedisBenchmark, err.Error())
		case !ok:
			row.Note = fmt.Sprintf("cost %d for every call (redis-benchmark sends one command), the mean of %s", cost, cfg.Cost)
		}
		rows = append(rows, row)
	}
	r := Report{Rows: rows}
	r.ComputeRatios()
	return r.Rows, nil
}
