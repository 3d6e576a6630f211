package bench

import (
	"testing"
	"time"
)

// row makes a Row as Run would, from latencies.
func row(name string, elapsed, clientCPU, serverCPU time.Duration, lat ...time.Duration) Row {
	var h Histogram
	for _, d := range lat {
		h.Record(d)
	}
	n := int64(len(lat))
	return Row{Name: name, Checks: n, Allowed: n, Elapsed: elapsed, ChecksPerSec: float64(n) / elapsed.Seconds(),
		ClientCPU: clientCPU, ServerCPU: serverCPU, StoppedBy: StoppedByDuration, hist: &h,
		P50: h.Quantile(0.5), P99: h.Quantile(0.99)}
}

func TestMergeRounds(t *testing.T) {
	ms := time.Millisecond
	r1 := []Row{
		row("tollgate", time.Second, 10*time.Microsecond, 40*time.Microsecond, 1*ms, 1*ms, 1*ms, 1*ms),
		{Name: "floor", Skipped: "no Redis"},
		{Name: "redis-benchmark", External: true, Checks: 100, Elapsed: time.Second, P50: 2 * ms, P99: 4 * ms, ClientCPU: time.Microsecond},
	}
	r2 := []Row{
		row("tollgate", 3*time.Second, 20*time.Microsecond, 0, 9*ms, 9*ms, 9*ms, 9*ms),
		row("floor", time.Second, time.Microsecond, time.Microsecond, 3*ms),
		{Name: "redis-benchmark", External: true, Checks: 300, Elapsed: time.Second, P50: 6 * ms, P99: 8 * ms, ClientCPU: 3 * time.Microsecond, StoppedBy: StoppedByInterrupt},
	}
	r3 := []Row{
		row("tollgate", 0, 0, 0),
		{Name: "floor", Skipped: "no Redis"},
		{Name: "redis-benchmark", Skipped: "interrupted"},
	}
	got := mergeRounds([][]Row{r1, r2, r3})
	if len(got) != 3 {
		t.Fatalf("%d rows, want 3", len(got))
	}
	within := func(d, want time.Duration) bool { return d >= want && d <= want+want/200 }

	tg := got[0]
	if tg.Checks != 8 || tg.Allowed != 8 || tg.Elapsed != 4*time.Second || tg.ChecksPerSec != 2 {
		t.Errorf("tollgate counts: %+v", tg)
	}
	// The quantiles are the merged histogram's: half at 1 ms, half at 9 ms.
	if !within(tg.P50, 1*ms) || !within(tg.P99, 9*ms) || tg.hist.Count() != 8 {
		t.Errorf("tollgate p50 %s, p99 %s, %d latencies; want 1ms, 9ms, 8", tg.P50, tg.P99, tg.hist.Count())
	}
	// CPU is weighted by checks; a round without Redis CPU makes it unknown.
	if tg.ClientCPU != 15*time.Microsecond || tg.ServerCPU != 0 {
		t.Errorf("tollgate cpu %s / %s, want 15µs / unknown", tg.ClientCPU, tg.ServerCPU)
	}

	// Skipped in two rounds of three: the third's figures alone.
	if fl := got[1]; fl.Skipped != "" || fl.Checks != 1 || !within(fl.P50, 3*ms) || fl.ServerCPU != time.Microsecond {
		t.Errorf("floor: %+v", fl)
	}

	// redis-benchmark has no histogram: check-weighted means, said so.
	rb := got[2]
	if rb.Checks != 400 || rb.P50 != 5*ms || rb.P99 != 7*ms || rb.ClientCPU != 2500*time.Nanosecond || rb.StoppedBy != StoppedByInterrupt || rb.Note == "" {
		t.Errorf("redis-benchmark: %+v", rb)
	}

	// Skipped in every round: stays skipped. One round: as it was.
	if all := mergeRounds([][]Row{{{Name: "seed", Skipped: "x"}}, {{Name: "seed", Skipped: "y"}}}); all[0].Skipped != "x" {
		t.Errorf("skipped in every round: %+v", all[0])
	}
	if one := mergeRounds([][]Row{r1}); one[0].Checks != 4 || one[1].Skipped == "" {
		t.Errorf("one round: %+v", one)
	}
}
