package bench

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/tollgate/tollgate/internal/seed"
	"github.com/tollgate/tollgate/store/redis"
)

// serverCPU reads the CPU time (user + system, INFO cpu) that every node of
// a Redis deployment has used, masters and replicas alike: on one machine
// the replicas re-apply every write on the same cores.
type serverCPU struct {
	client rueidis.Client
}

// newServerCPU connects to the deployment opts describes.
func newServerCPU(opts redis.Options) (*serverCPU, error) {
	c, err := seed.NewClient(opts)
	if err != nil {
		return nil, fmt.Errorf("INFO cpu: connect %v: %w", opts.Addrs, err)
	}
	return &serverCPU{client: c}, nil
}

// total returns the CPU time all nodes have used since they started.
func (s *serverCPU) total(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var sum time.Duration
	for addr, n := range s.client.Nodes() {
		info, err := n.Do(ctx, n.B().Info().Section("cpu").Build()).ToString()
		if err != nil {
			return 0, fmt.Errorf("INFO cpu on %s: %w", addr, err)
		}
		d, err := parseInfoCPU(info)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu on %s: %w", addr, err)
		}
		sum += d
	}
	return sum, nil
}

func (s *serverCPU) close() { s.client.Close() }

// parseInfoCPU returns used_cpu_user + used_cpu_sys (in seconds) of an INFO
// cpu reply.
func parseInfoCPU(info string) (time.Duration, error) {
	var sum time.Duration
	found := 0
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || (name != "used_cpu_user" && name != "used_cpu_sys") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		sum += time.Duration(f * float64(time.Second))
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("no used_cpu_user and used_cpu_sys in %q", info)
	}
	return sum, nil
}

// RedisCPU connects to the Redis deployment opts describes and returns a
// function for Config.ServerCPU (the CPU time every node has used so far)
// and one that closes the connection.
func RedisCPU(opts redis.Options) (func(context.Context) (time.Duration, error), func(), error) {
	s, err := newServerCPU(opts)
	if err != nil {
		return nil, nil, err
	}
	return s.total, s.close, nil
}
