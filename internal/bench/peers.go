package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/seed"
	"github.com/tollgate/tollgate/store/redis"
)

// Seed is the Target of the seed's pattern (package internal/seed) on a
// rueidis client with the client options of the Redis store: a sliding log
// of one sorted-set member per unit, checked and added in two transactions,
// on the app's clock.
type Seed struct {
	lim   seed.Limiter
	limit tollgate.Limit
}

// NewSeed connects to the Redis deployment opts describes.
func NewSeed(opts redis.Options, limit tollgate.Limit) (*Seed, error) {
	c, err := seed.NewClient(opts)
	if err != nil {
		return nil, fmt.Errorf("seed: connect %v: %w", opts.Addrs, err)
	}
	return &Seed{lim: seed.Limiter{Client: c, Prefix: "tgbench-seed:"}, limit: limit}, nil
}

// Check implements Target.
func (s *Seed) Check(ctx context.Context, key string, cost int64) (bool, error) {
	return s.lim.Consume(ctx, key, cost, s.limit.Units, s.limit.Window, time.Now())
}

// Reset implements Resetter.
func (s *Seed) Reset(ctx context.Context, key string) error { return s.lim.Reset(ctx, key) }

// Close closes the client.
func (s *Seed) Close() error {
	s.lim.Client.Close()
	return nil
}

// Floor is the Target of the physical floor of a check on Redis: one
// trivial round trip, EVALSHA of "return 1" with the check's key (so that
// it goes to that key's master), on a rueidis client with the Redis
// store's client options. Every check is allowed.
type Floor struct {
	client rueidis.Client
	script *rueidis.Lua
}

// NewFloor connects to the Redis deployment opts describes.
func NewFloor(opts redis.Options) (*Floor, error) {
	c, err := seed.NewClient(opts)
	if err != nil {
		return nil, fmt.Errorf("floor: connect %v: %w", opts.Addrs, err)
	}
	return &Floor{client: c, script: rueidis.NewLuaScript("return 1")}, nil
}

// Check implements Target.
func (f *Floor) Check(ctx context.Context, key string, _ int64) (bool, error) {
	v, err := f.script.Exec(ctx, f.client, []string{"tgbench-floor:{" + key + "}"}, nil).AsInt64()
	if err == nil && v != 1 {
		err = fmt.Errorf("floor: reply %d, want 1", v)
	}
	return err == nil, err
}

// Close closes the client.
func (f *Floor) Close() error {
	f.client.Close()
	return nil
}

// RedisRate is the Target of github.com/go-redis/redis_rate (GCRA, one Lua
// script per check) on go-redis: Rate and Burst are the limit's units per
// its window, AllowN charges the cost. It is a benchmark peer only.
type RedisRate struct {
	client goredis.UniversalClient
	lim    *redis_rate.Limiter
	limit  redis_rate.Limit
}

// NewRedisRate connects to the Redis deployment opts describes, with a
// pool of poolSize connections (the run's concurrency, so that no caller
// waits for a connection; go-redis does not pipeline concurrent calls).
func NewRedisRate(ctx context.Context, opts redis.Options, limit tollgate.Limit, poolSize int) (*RedisRate, error) {
	if limit.Units > int64(int(^uint32(0)>>1)) {
		return nil, fmt.Errorf("redis_rate: limit %d too large", limit.Units)
	}
	tlsConfig, err := opts.TLS.TLSConfig()
	if err != nil {
		return nil, err
	}
	var c goredis.UniversalClient
	if opts.Cluster {
		c = goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs: opts.Addrs, Username: opts.Username, Password: opts.Password, TLSConfig: tlsConfig,
			DialTimeout: opts.DialTimeout, PoolSize: poolSize, DisableIdentity: true,
		})
	} else {
		c = goredis.NewClient(&goredis.Options{
			Addr: opts.Addrs[0], Username: opts.Username, Password: opts.Password, TLSConfig: tlsConfig,
			DialTimeout: opts.DialTimeout, PoolSize: poolSize, DisableIdentity: true,
		})
	}
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis_rate: connect %v: %w", opts.Addrs, err)
	}
	units := int(limit.Units)
	return &RedisRate{
		client: c,
		lim:    redis_rate.NewLimiter(c),
		limit:  redis_rate.Limit{Rate: units, Burst: units, Period: limit.Window},
	}, nil
}

// Check implements Target.
func (r *RedisRate) Check(ctx context.Context, key string, cost int64) (bool, error) {
	res, err := r.lim.AllowN(ctx, "tgbench:"+key, r.limit, int(cost))
	if err != nil {
		return false, err
	}
	return res.Allowed > 0, nil
}

// Reset implements Resetter.
func (r *RedisRate) Reset(ctx context.Context, key string) error {
	return r.lim.Reset(ctx, "tgbench:"+key)
}

// Close closes the client.
func (r *RedisRate) Close() error { return r.client.Close() }

// Ceiling runs redis-benchmark with Tollgate's own script, the same work per
// check without any Go client: the ceiling of one deployment on this
// machine.
type Ceiling struct {
	// Bin is the redis-benchmark binary; "" looks it up in PATH.
	Bin string
	// Redis is the deployment; its TLS options are passed on.
	Redis redis.Options
	// Limit, Cost: each call is a consume of Cost against Limit (the
	// server's clock, a random request id, as the store sends them).
	Limit tollgate.Limit
	Cost  int64
	// Requests (-n), Clients (-c) and Keys (-r).
	Requests int64
	Clients  int
	Keys     int
	// Pipeline (-P) is how many calls each connection sends before it
	// reads the replies; 0 or 1 means none.
	Pipeline int
	// Timeout bounds the run; redis-benchmark is killed past it.
	Timeout time.Duration
	// KeepKeys leaves the run's keys in Redis; by default they are
	// deleted afterwards (SCAN on every node, untimed).
	KeepKeys bool
	// ServerCPU, when not nil, is read before and after redis-benchmark
	// runs, for Row.ServerCPU (see Config.ServerCPU).
	ServerCPU func(context.Context) (time.Duration, error)
}

// ErrNoRedisBenchmark is returned by Ceiling.Run when redis-benchmark is not
// installed.
var ErrNoRedisBenchmark = errors.New("redis-benchmark not found in PATH")

// Run loads the script on every node (SCRIPT LOAD), then runs
//
//	redis-benchmark -h H -p P [--cluster] -n N -c C -r K [-P D] --csv \
//	  EVALSHA <sha> 3 tgbench-ceil-<run>:{tag}:__rand_int__:s …:d …:l<window µs> \
//	  0 <cost> "" __rand_int__ <dedupe µs> <bound> <max ids> <algorithm> <units> <window µs>
//
// and returns a row, named NameRedisBenchmark or "redis-benchmark-P<D>",
// with its requests per second and its p50 and p99 latency. In cluster mode redis-benchmark routes each call by the "{tag}"
// it fills in with a slot of the node it sends to; the keys of a call
// share that tag but get independent random numbers, which does the same
// Redis work as a real call. (A hash tag around __rand_int__, as in
// tg:{__rand_int__}:l, would put the two keys in different slots: CROSSSLOT.)
// Unless KeepKeys, the run's keys are deleted afterwards.
func (c Ceiling) Run(ctx context.Context) (Row, error) {
	bin := c.Bin
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-benchmark"); err != nil {
			return Row{}, ErrNoRedisBenchmark
		}
	}
	sha, err := loadScript(ctx, c.Redis, redis.Script())
	if err != nil {
		return Row{}, err
	}
	host, port, err := net.SplitHostPort(c.Redis.Addrs[0])
	if err != nil {
		return Row{}, err
	}
	args := []string{"-h", host, "-p", port,
		"-n", strconv.FormatInt(max(c.Requests, 1), 10), "-c", strconv.Itoa(max(c.Clients, 1)),
		"-r", strconv.Itoa(max(c.Keys, 1)), "--csv"}
	name := NameRedisBenchmark
	if c.Pipeline > 1 {
		args = append(args, "-P", strconv.Itoa(c.Pipeline))
		name += "-P" + strconv.Itoa(c.Pipeline)
	}
	if c.Redis.Cluster {
		args = append(args, "--cluster")
	}
	if c.Redis.Username != "" {
		args = append(args, "--user", c.Redis.Username)
	}
	if c.Redis.Password != "" {
		args = append(args, "-a", c.Redis.Password)
	}
	if t := c.Redis.TLS; t != nil {
		args = append(args, "--tls")
		for _, f := range []struct{ flag, v string }{{"--cacert", t.CAFile}, {"--cert", t.CertFile}, {"--key", t.KeyFile}, {"--sni", t.ServerName}} {
			if f.v != "" {
				args = append(args, f.flag, f.v)
			}
		}
		if t.InsecureSkipVerify {
			args = append(args, "--insecure")
		}
	}
	dedupe := min(tollgate.DefaultDedupeWindow, c.Limit.Window)
	prefix := "tgbench-ceil-" + runID() + ":"
	if !c.KeepKeys {
		defer deleteKeys(context.WithoutCancel(ctx), c.Redis, prefix)
	}
	window := strconv.FormatInt(c.Limit.Window.Microseconds(), 10)
	args = append(args, "EVALSHA", sha, "3", prefix+"{tag}:__rand_int__:s", prefix+"{tag}:__rand_int__:d", prefix+"{tag}:__rand_int__:l"+window,
		"0", strconv.FormatInt(max(c.Cost, 1), 10), "", "__rand_int__", strconv.FormatInt(dedupe.Microseconds(), 10),
		strconv.Itoa(tollgate.DefaultMaxLogEntries), strconv.Itoa(tollgate.MaxDedupeIDs),
		strconv.Itoa(int(c.Limit.Algorithm)), strconv.FormatInt(c.Limit.Units, 10), window)

	timeout := c.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(cctx, bin, args...)
	cmd.Stderr = &stderr
	srv0, srvErr := time.Duration(0), error(nil)
	if c.ServerCPU != nil {
		srv0, srvErr = c.ServerCPU(ctx)
	}
	out, err := cmd.Output()
	var srv time.Duration
	if c.ServerCPU != nil && srvErr == nil && err == nil {
		if srv1, err := c.ServerCPU(ctx); err == nil {
			srv = srv1 - srv0
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return Row{}, ctx.Err()
		}
		if cctx.Err() != nil {
			return Row{}, fmt.Errorf("redis-benchmark: killed after %s", timeout)
		}
		return Row{}, fmt.Errorf("redis-benchmark: %w: %s", err, lastLine(stderr.String()+string(out)))
	}
	rps, p50, p99, err := parseBenchmarkCSV(out)
	if err != nil {
		return Row{}, fmt.Errorf("redis-benchmark: %w: %s", err, lastLine(stderr.String()+string(out)))
	}
	n := time.Duration(max(c.Requests, 1))
	return Row{
		Name:         name,
		External:     true,
		ClientCPU:    (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()) / n,
		ServerCPU:    srv / n,
		Checks:       c.Requests,
		ChecksPerSec: rps,
		Elapsed:      time.Duration(float64(c.Requests) / rps * float64(time.Second)),
		P50:          time.Duration(p50 * float64(time.Millisecond)),
		P99:          time.Duration(p99 * float64(time.Millisecond)),
		StoppedBy:    StoppedByCount,
	}, nil
}

// loadScript runs SCRIPT LOAD of src on every node of the deployment and
// returns its SHA1.
func loadScript(ctx context.Context, opts redis.Options, src string) (string, error) {
	c, err := seed.NewClient(opts)
	if err != nil {
		return "", fmt.Errorf("SCRIPT LOAD: connect %v: %w", opts.Addrs, err)
	}
	defer c.Close()
	var sha string
	for addr, n := range c.Nodes() {
		s, err := n.Do(ctx, n.B().ScriptLoad().Script(src).Build()).ToString()
		if err != nil {
			return "", fmt.Errorf("SCRIPT LOAD on %s: %w", addr, err)
		}
		sha = s
	}
	if sha == "" {
		return "", errors.New("SCRIPT LOAD: no node")
	}
	return sha, nil
}

// deleteKeys deletes the keys that start with prefix on every node of the
// deployment, within DefaultResetTimeout; errors are ignored (the keys
// expire within a window anyway).
func deleteKeys(ctx context.Context, opts redis.Options, prefix string) {
	ctx, cancel := context.WithTimeout(ctx, DefaultResetTimeout)
	defer cancel()
	c, err := seed.NewClient(opts)
	if err != nil {
		return
	}
	defer c.Close()
	for _, n := range c.Nodes() { // replicas list their masters' keys again: DEL is idempotent
		var cursor uint64
		for {
			e, err := n.Do(ctx, n.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				break
			}
			cmds := make([]rueidis.Completed, 0, len(e.Elements))
			for _, k := range e.Elements {
				cmds = append(cmds, c.B().Unlink().Key(k).Build()) // through c: routed to the key's master
			}
			if len(cmds) > 0 {
				c.DoMulti(ctx, cmds...)
			}
			if cursor = e.Cursor; cursor == 0 || ctx.Err() != nil {
				break
			}
		}
	}
}

// parseBenchmarkCSV reads redis-benchmark --csv output: requests per second
// and p50 and p99 latency in milliseconds of its one test. In cluster mode a
// list of masters precedes the CSV header.
func parseBenchmarkCSV(out []byte) (rps, p50, p99 float64, err error) {
	if i := bytes.Index(out, []byte(`"test",`)); i > 0 {
		out = out[i:]
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 2 {
		return 0, 0, 0, fmt.Errorf("unexpected output: %d CSV records, %v", len(recs), err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	last := recs[len(recs)-1]
	get := func(name string) float64 {
		i, ok := col[name]
		if !ok || i >= len(last) {
			err = cmpErr(err, fmt.Errorf("no column %q in %v", name, recs[0]))
			return 0
		}
		v, perr := strconv.ParseFloat(last[i], 64)
		err = cmpErr(err, perr)
		return v
	}
	rps, p50, p99 = get("rps"), get("p50_latency_ms"), get("p99_latency_ms")
	if err == nil && rps <= 0 {
		err = fmt.Errorf("rps %v", rps)
	}
	return rps, p50, p99, err
}

// cmpErr returns first, or err when first is nil.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// NodeAddrs returns the addresses of every node of the deployment opts
// describes: the server, or every node the Cluster announces.
func NodeAddrs(ctx context.Context, opts redis.Options) ([]string, error) {
	c, err := seed.NewClient(opts)
	if err != nil {
		return nil, fmt.Errorf("connect %v: %w", opts.Addrs, err)
	}
	defer c.Close()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		return nil, fmt.Errorf("connect %v: %w", opts.Addrs, err)
	}
	var addrs []string
	for a := range c.Nodes() {
		addrs = append(addrs, a)
	}
	return addrs, nil
}
