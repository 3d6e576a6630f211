package bench_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
)

func TestParseCost(t *testing.T) {
	for _, tc := range []struct {
		spec     string
		min, max int64
		mean     float64
	}{
		{"3", 3, 3, 3},
		{"1-10", 1, 10, 5.5},
		{"1:90,10:9,100:1", 1, 100, 0.9 + 0.9 + 1},
		{" 7 ", 7, 7, 7},
	} {
		c, err := bench.ParseCost(tc.spec)
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if c.Max() != tc.max || math.Abs(c.Mean()-tc.mean) > 1e-9 {
			t.Errorf("%q: max %d, mean %v; want %d, %v", tc.spec, c.Max(), c.Mean(), tc.max, tc.mean)
		}
		seen := map[int64]bool{}
		for range 2000 {
			v := c.Draw()
			if v < tc.min || v > tc.max {
				t.Fatalf("%q: drew %d", tc.spec, v)
			}
			seen[v] = true
		}
		if tc.spec == "1-10" && len(seen) != 10 {
			t.Errorf("1-10: drew %d distinct values in 2000", len(seen))
		}
	}
	for _, bad := range []string{"", "0", "-1", "x", "5-1", "1-", "1:0", "1:x", "1:1,", "2000000000000000"} {
		if _, err := bench.ParseCost(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	var zero bench.Cost
	if zero.Draw() != 1 || zero.String() != "1" || zero.Max() != 1 {
		t.Error("zero Cost is not 1")
	}
	if n, ok := bench.FixedCost(4).Fixed(); !ok || n != 4 {
		t.Errorf("FixedCost(4).Fixed() = %d, %t", n, ok)
	}
}

func TestParseInfoCPU(t *testing.T) {
	for _, tc := range []struct {
		info string
		want time.Duration
		ok   bool
	}{
		{"# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250000\r\nused_cpu_sys_children:9.000000\r\n", 1750 * time.Millisecond, true},
		{"used_cpu_user:2\nused_cpu_sys:0\n", 2 * time.Second, true},
		{"used_cpu_sys:1.0\n", 0, false},
		{"used_cpu_sys:x\nused_cpu_user:1\n", 0, false},
		{"", 0, false},
	} {
		got, err := bench.ParseInfoCPU(tc.info)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: %v, %v; want %v, ok %t", tc.info, got, err, tc.want, tc.ok)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h bench.Histogram
	for i := range 1000 {
		h.Record(time.Duration(i+1) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if d := max(got-tc.want, tc.want-got); d > tc.want/16 {
			t.Errorf("Quantile(%v) = %v, want %v within 1/16", tc.q, got, tc.want)
		}
	}
	for _, d := range []time.Duration{0, 1, 15, 16, 17, 31, 32, 33, 1000, 123_456, 1 << 40} {
		var one bench.Histogram
		one.Record(d)
		got := one.Quantile(0.5)
		if diff := max(got-d, d-got); float64(diff) > float64(d)/16 {
			t.Errorf("%d ns reads %d", d, got)
		}
	}
	var a, b bench.Histogram
	a.Record(time.Millisecond)
	b.Record(time.Second)
	a.Merge(&b)
	if a.Count() != 2 || a.Quantile(1) < 900*time.Millisecond {
		t.Errorf("merged: count %d, max %s", a.Count(), a.Quantile(1))
	}
	var empty bench.Histogram
	if empty.Quantile(0.5) != 0 {
		t.Error("empty histogram has a quantile")
	}
}

func TestKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("%w: %w", tollgate.ErrUnavailable, context.DeadlineExceeded), "timeout"},
		{context.Canceled, "canceled"},
		{fmt.Errorf("x: %w", tollgate.ErrCostExceedsLimit), "cost_exceeds_limit"},
		{tollgate.ErrInvalidKey, "invalid_input"},
		{&bench.KindError{Kind: "http_503_unavailable", Err: errors.New("503")}, "http_503_unavailable"},
		{fmt.Errorf("%w: %w", tollgate.ErrUnavailable, rueidis.ErrClosing), "closed"},
		{errors.New("boom"), "other"},
	} {
		if got := bench.Kind(tc.err); got != tc.want {
			t.Errorf("Kind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.1.2.3": true, "::1": true, "localhost": true, "LOCALHOST.": true, "::ffff:127.0.0.1": true,
		"10.0.0.1": false, "0.0.0.0": false, "::": false, "example.com": false, "localhost.example.com": false, "": false, "128.0.0.1": false,
	} {
		if got := bench.IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %t", host, got)
		}
	}
	for addr, ok := range map[string]bool{"127.0.0.11:7000": true, "[::1]:80": true, "localhost:1": true, "10.1.1.1:7000": false, "redis.internal:6379": false, "nohost": false} {
		err := bench.CheckLoopbackAddr(addr)
		if (err == nil) != ok {
			t.Errorf("CheckLoopbackAddr(%q) = %v", addr, err)
		}
		if addr == "10.1.1.1:7000" && !errors.Is(err, bench.ErrRemote) {
			t.Errorf("CheckLoopbackAddr(%q) = %v, want ErrRemote", addr, err)
		}
	}
	for u, ok := range map[string]bool{"http://127.0.0.1:8080": true, "https://localhost/": true, "http://[::1]:1": true, "http://example.com": false, "http://10.0.0.1:80": false, "127.0.0.1:8080": false} {
		if err := bench.CheckLoopbackURL(u); (err == nil) != ok {
			t.Errorf("CheckLoopbackURL(%q) = %v", u, err)
		}
	}
}
