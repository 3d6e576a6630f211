package bench

import (
	"math/bits"
	"time"
)

// Histogram counts latencies in log-linear buckets, as an HDR histogram
// does: 128 linear buckets per power of two of nanoseconds, so a quantile
// is within 1/256 (0.4%) of the true value (two significant digits and
// more), from 1 ns to hours. Its size is fixed (64 KiB) whatever the
// number of samples, Record does not allocate, and histograms of several
// goroutines add up with Merge. The zero value is empty and ready to use;
// it is not safe for concurrent use.
//
// The store/redis benchmarks use it too, so figures from both are
// comparable (see BENCHMARKS.md). It was chosen over an HDR histogram
// (github.com/HdrHistogram/hdrhistogram-go) for that: the same accuracy
// for the open-loop runs' tails (Config.Rate), while it needs no
// dependency, no range set up front and no error handling when recording.
type Histogram [58 * histSub]uint64

// histSub is the number of buckets per power of two, 1<<histBits.
const (
	histBits = 7
	histSub  = 1 << histBits
)

func histIndex(ns int64) int {
	if ns < histSub {
		return int(max(ns, 0))
	}
	e := bits.Len64(uint64(ns)) - histBits - 1 // ns>>e is in [histSub, 2*histSub)
	return (e+1)*histSub + int(ns>>e) - histSub
}

// histValue is the middle of bucket i, in nanoseconds.
func histValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	e := i/histSub - 1
	lo := int64(i%histSub+histSub) << e
	return lo + (int64(1)<<e)/2
}

// Record counts one latency; a negative one counts as 0.
func (h *Histogram) Record(d time.Duration) { h[histIndex(int64(d))]++ }

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, n := range o {
		h[i] += n
	}
}

// Count returns the number of latencies recorded.
func (h *Histogram) Count() uint64 {
	var total uint64
	for _, n := range h {
		total += n
	}
	return total
}

// Quantile returns the latency below which a fraction q (0 to 1) of the
// samples fall, as the middle of its bucket (within half a bucket, 1/256); 0 when h is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(q*float64(total-1)) + 1 // 1-based rank of the sample
	var seen uint64
	for i, n := range h {
		if seen += n; seen >= rank {
			return time.Duration(histValue(i))
		}
	}
	return time.Duration(histValue(len(h) - 1))
}
