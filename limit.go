package tollgate

import (
	"fmt"
	"time"
)

// Algorithm selects how a Limit counts units over its window.
// The zero value is SlidingLog.
type Algorithm uint8

const (
	// SlidingLog counts exactly: a request's cost is counted for exactly one
	// Window after the instant it was allowed, then it drops out. The store
	// keeps one entry per allowed request (not per unit) and a running total
	// beside it, so memory grows with the number of allowed requests in the
	// window, and a check costs O(log n + expired entries).
	SlidingLog Algorithm = iota

	// SlidingWindow approximates the sliding log with two fixed buckets of
	// length Window aligned to the Unix epoch: Used is the current bucket's
	// count plus the previous bucket's count weighted by the part of the
	// previous bucket that the sliding window still covers (rounded up).
	// It keeps O(1) memory per key. It is exact when traffic is spread evenly
	// over the previous bucket; in the worst case (the previous bucket's
	// units all at its very end) at most 2×Units are allowed in any
	// Window-long interval, never more.
	SlidingWindow

	// GCRA (generic cell rate algorithm, equivalently a leaky bucket) admits
	// a smooth rate of Units per Window with a burst of up to Units: each
	// allowed unit fills a bucket of capacity Units that drains continuously
	// at Units per Window. Used is the bucket's level rounded up.
	GCRA
)

var algorithmNames = [...]string{
	SlidingLog:    "sliding_log",
	SlidingWindow: "sliding_window",
	GCRA:          "gcra",
}

// String returns the algorithm's name as used in configs and the HTTP API:
// "sliding_log", "sliding_window" or "gcra".
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// ParseAlgorithm parses a name as returned by Algorithm.String. The empty
// string parses as SlidingLog, the default. Other names fail with
// ErrInvalidLimit.
func ParseAlgorithm(s string) (Algorithm, error) {
	if s == "" {
		return SlidingLog, nil
	}
	for a, name := range algorithmNames {
		if s == name {
			return Algorithm(a), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown algorithm %q (want sliding_log, sliding_window or gcra)", ErrInvalidLimit, s)
}

// Bounds of a valid Limit.
const (
	// MinWindow is the shortest window. Time is kept in whole microseconds,
	// and a shorter window would make little sense for a shared store.
	MinWindow = time.Millisecond
	// MaxWindow is the longest window: 30 days.
	MaxWindow = 30 * 24 * time.Hour
	// MaxUnits is the largest Units (10^15). The Redis store computes in Lua,
	// whose numbers are float64: below 2^53 every sum of units stays exact.
	MaxUnits = 1_000_000_000_000_000
)

// Limit is a quota: at most Units cost units per Window, counted by
// Algorithm. It is a comparable value; the zero Limit is invalid.
type Limit struct {
	// Units is how many cost units fit in one Window: 1 to MaxUnits.
	Units int64
	// Window is the length of the rolling window, MinWindow to MaxWindow.
	// Sub-microsecond parts are ignored.
	Window time.Duration
	// Algorithm is how units are counted; the zero value is SlidingLog.
	Algorithm Algorithm
}

// PerSecond returns a sliding-log Limit of units per second.
func PerSecond(units int64) Limit { return Limit{Units: units, Window: time.Second} }

// PerMinute returns a sliding-log Limit of units per minute.
func PerMinute(units int64) Limit { return Limit{Units: units, Window: time.Minute} }

// PerHour returns a sliding-log Limit of units per hour.
func PerHour(units int64) Limit { return Limit{Units: units, Window: time.Hour} }

// String formats the limit as "100 per 1h0m0s (sliding_log)".
func (l Limit) String() string {
	return fmt.Sprintf("%d per %s (%s)", l.Units, l.Window, l.Algorithm)
}

// IsZero reports whether l is the zero Limit.
func (l Limit) IsZero() bool { return l == Limit{} }

// Validate reports whether l is usable. Its errors wrap ErrInvalidLimit.
func (l Limit) Validate() error {
	switch {
	case l.Units < 1 || l.Units > MaxUnits:
		return fmt.Errorf("%w: units %d out of range [1, %d]", ErrInvalidLimit, l.Units, int64(MaxUnits))
	case l.Window < MinWindow || l.Window > MaxWindow:
		return fmt.Errorf("%w: window %s out of range [%s, %s]", ErrInvalidLimit, l.Window, MinWindow, MaxWindow)
	case int(l.Algorithm) >= len(algorithmNames):
		return fmt.Errorf("%w: unknown algorithm %s", ErrInvalidLimit, l.Algorithm)
	}
	return nil
}
