// Package seed is the home-grown rate limiter Tollgate replaces, kept as a
// benchmark peer (store/redis benchmarks, `tollgate-lab bench --compare`) and as
// a correctness counter-example in tests. It is not part of the product.
//
// Per customer it keeps a sorted set of one member per unit, scored by the
// app's millisecond clock; a check is two round trips:
//
//	MULTI; ZREMRANGEBYSCORE key -inf now-window; ZCARD key; EXEC
//	if count+cost <= limit:
//	MULTI; ZADD key now "now-0" now "now-1" … (cost members); PEXPIRE key window; EXEC
//
// The trim is inclusive, so a unit counts while now < its time + window, as
// in Tollgate.
//
// Two flaws follow. Members are built from the millisecond timestamp, so
// two requests of one key in the same millisecond write the same members and
// the set silently loses units. And the check and the add are separate
// transactions, so concurrent requests all see the same count and together
// overshoot the limit.
package seed

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/tollgate/tollgate/store/redis"
)

// Limiter is the seed's limiter over one client. The zero Prefix is valid.
type Limiter struct {
	Client rueidis.Client
	// Prefix starts every key, before the customer key's hash tag.
	Prefix string
}

// NewClient connects to Redis with the client options redis.New uses for
// opts (addresses, Cluster, credentials, TLS, dial timeout, no client-side
// cache), so that the seed and Tollgate are measured on equal terms.
// AddressMap is not supported.
func NewClient(opts redis.Options) (rueidis.Client, error) {
	tlsConfig, err := opts.TLS.TLSConfig()
	if err != nil {
		return nil, err
	}
	return rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       opts.Addrs,
		ForceSingleClient: !opts.Cluster,
		Username:          opts.Username,
		Password:          opts.Password,
		TLSConfig:         tlsConfig,
		Dialer:            net.Dialer{Timeout: opts.DialTimeout},
		DisableCache:      true,
	})
}

// Key is the Redis key of a customer key: the key in a hash tag, as the seed
// did to run on a Cluster.
func (s Limiter) Key(key string) string { return s.Prefix + "{" + key + "}" }

// Consume records cost units of key at now if they fit in units per window.
func (s Limiter) Consume(ctx context.Context, key string, cost, units int64, window time.Duration, now time.Time) (allowed bool, err error) {
	k := s.Key(key)
	nowMS, windowMS := now.UnixMilli(), window.Milliseconds()
	b := s.Client.B()
	res := s.Client.DoMulti(ctx,
		b.Multi().Build(),
		b.Zremrangebyscore().Key(k).Min("-inf").Max(strconv.FormatInt(nowMS-windowMS, 10)).Build(),
		b.Zcard().Key(k).Build(),
		b.Exec().Build(),
	)
	check, err := res[len(res)-1].AsIntSlice()
	if err != nil {
		return false, err
	}
	if len(check) != 2 {
		return false, fmt.Errorf("seed: EXEC returned %d replies, want 2", len(check))
	}
	if check[1]+cost > units {
		return false, nil
	}
	z := b.Zadd().Key(k).ScoreMember()
	for i := range cost {
		z = z.ScoreMember(float64(nowMS), fmt.Sprintf("%d-%d", nowMS, i))
	}
	res = s.Client.DoMulti(ctx,
		b.Multi().Build(),
		z.Build(),
		b.Pexpire().Key(k).Milliseconds(windowMS).Build(),
		b.Exec().Build(),
	)
	if err := res[len(res)-1].Error(); err != nil {
		return false, err
	}
	return true, nil
}

// Card returns the number of members of the seed's set for key.
func (s Limiter) Card(ctx context.Context, key string) (int64, error) {
	return s.Client.Do(ctx, s.Client.B().Zcard().Key(s.Key(key)).Build()).AsInt64()
}

// Reset deletes key's set.
func (s Limiter) Reset(ctx context.Context, key string) error {
	return s.Client.Do(ctx, s.Client.B().Del().Key(s.Key(key)).Build()).Error()
}
