package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Cost is the distribution of the cost of each check. The zero Cost is
// always 1.
type Cost struct {
	spec   string
	lo, hi int64    // uniform in [lo, hi] when values is empty
	values []int64  // weighted choices
	cum    []uint64 // cumulative weights of values
}

// maxCost bounds a cost, as tollgate.MaxUnits bounds a limit.
const maxCost = 1_000_000_000_000_000

// ParseCost parses a cost distribution:
//
//	3            every check costs 3
//	1-10         uniform over 1 to 10
//	1:90,10:9,100:1   weighted: cost 1 90% of the time, 10 9%, 100 1%
func ParseCost(s string) (Cost, error) {
	s = strings.TrimSpace(s)
	bad := func(format string, args ...any) (Cost, error) {
		return Cost{}, fmt.Errorf("cost %q: "+format+` (want N, MIN-MAX or COST:WEIGHT,...)`, append([]any{s}, args...)...)
	}
	num := func(v string) (int64, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 1 || n > maxCost {
			return 0, errors.New("not an integer from 1 to 10^15")
		}
		return n, nil
	}
	switch {
	case s == "":
		return bad("empty")
	case strings.Contains(s, ":"):
		c := Cost{spec: s}
		var total uint64
		for part := range strings.SplitSeq(s, ",") {
			cs, ws, ok := strings.Cut(part, ":")
			if !ok {
				return bad("%q has no weight", part)
			}
			v, err := num(cs)
			if err != nil {
				return bad("cost %q: %v", cs, err)
			}
			w, err := strconv.ParseUint(strings.TrimSpace(ws), 10, 32)
			if err != nil || w == 0 {
				return bad("weight %q: not an integer from 1 to 2^32-1", ws)
			}
			total += w
			c.values = append(c.values, v)
			c.cum = append(c.cum, total)
		}
		return c, nil
	case strings.Contains(s, "-"):
		los, his, _ := strings.Cut(s, "-")
		lo, err := num(los)
		if err != nil {
			return bad("minimum: %v", err)
		}
		hi, err := num(his)
		if err != nil {
			return bad("maximum: %v", err)
		}
		if hi < lo {
			return bad("maximum below minimum")
		}
		return Cost{spec: s, lo: lo, hi: hi}, nil
	}
	n, err := num(s)
	if err != nil {
		return bad("%v", err)
	}
	return Cost{spec: s, lo: n, hi: n}, nil
}

// FixedCost returns the Cost that is always n.
func FixedCost(n int64) Cost { return Cost{spec: strconv.FormatInt(n, 10), lo: n, hi: n} }

// Draw returns a cost; safe for concurrent use.
func (c Cost) Draw() int64 {
	switch {
	case len(c.values) > 0:
		w := rand.Uint64N(c.cum[len(c.cum)-1])
		for i, cum := range c.cum {
			if w < cum {
				return c.values[i]
			}
		}
		return c.values[len(c.values)-1]
	case c.hi == 0:
		return 1
	case c.hi == c.lo:
		return c.lo
	}
	return c.lo + rand.Int64N(c.hi-c.lo+1)
}

// Max returns the largest cost c draws.
func (c Cost) Max() int64 {
	if len(c.values) > 0 {
		m := c.values[0]
		for _, v := range c.values {
			m = max(m, v)
		}
		return m
	}
	return max(c.hi, 1)
}

// Mean returns the mean cost.
func (c Cost) Mean() float64 {
	if len(c.values) > 0 {
		var sum, prev float64
		for i, v := range c.values {
			cum := float64(c.cum[i])
			sum += float64(v) * (cum - prev)
			prev = cum
		}
		return sum / prev
	}
	if c.hi == 0 {
		return 1
	}
	return (float64(c.lo) + float64(c.hi)) / 2
}

// Fixed returns the cost and true when every draw is the same.
func (c Cost) Fixed() (int64, bool) {
	if len(c.values) == 0 && c.lo == c.hi {
		return max(c.hi, 1), true
	}
	return 0, false
}

// String returns the distribution as ParseCost reads it.
func (c Cost) String() string {
	if c.spec == "" {
		return "1"
	}
	return c.spec
}
