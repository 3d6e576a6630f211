package bench_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/bench"
)

func sampleReport() bench.Report {
	r := bench.Report{
		Setup: bench.Setup{Target: "library", Store: "redis-cluster", Addr: "127.0.0.11:7000", Units: 1000, Window: time.Hour,
			Algorithm: "sliding_log", Cost: "1", Keys: 10, Concurrency: 4, MaxDuration: time.Second},
		Rows: []bench.Row{
			{Name: "tollgate", Checks: 100, Allowed: 90, Denied: 8, Errors: 2, ErrorKinds: map[string]int64{"timeout": 2},
				ErrorSamples: map[string]string{"timeout": "context deadline exceeded"}, Elapsed: time.Second, ChecksPerSec: 100,
				P50: time.Millisecond, P90: 2 * time.Millisecond, P99: 4 * time.Millisecond, P999: 8 * time.Millisecond, StoppedBy: "duration"},
			{Name: "seed", Checks: 50, Allowed: 50, Elapsed: time.Second, ChecksPerSec: 50, P50: time.Millisecond, P99: 8 * time.Millisecond, StoppedBy: "duration"},
			{Name: "redis-benchmark", External: true, Checks: 100, ChecksPerSec: 200, P50: 500 * time.Microsecond, P99: 2 * time.Millisecond, StoppedBy: "count"},
			{Name: "redis_rate", Skipped: "connect: refused"},
		},
	}
	r.ComputeRatios()
	return r
}

func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(sampleReport())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]any{
		"checks_per_sec": 100.0, "allowed": 90.0, "denied": 8.0, "errors": 2.0, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 4.0, "p999_ms": 8.0,
		"target": "library", "store": "redis-cluster", "limit": 1000.0, "window": "1h", "name": "tollgate", "stopped_by": "duration",
	} {
		if m[field] != want {
			t.Errorf("%s = %v, want %v", field, m[field], want)
		}
	}
	if k, _ := m["errors_by_kind"].(map[string]any); k["timeout"] != 2.0 {
		t.Errorf("errors_by_kind = %v", m["errors_by_kind"])
	}
	rows, _ := m["compare"].([]any)
	if len(rows) != 4 {
		t.Fatalf("compare: %d rows, want 4", len(rows))
	}
	seed := rows[1].(map[string]any)
	if seed["ratio_checks_per_sec"] != 0.5 || seed["ratio_p99"] != 2.0 {
		t.Errorf("seed ratios %v, %v; want 0.5, 2", seed["ratio_checks_per_sec"], seed["ratio_p99"])
	}
	ext := rows[2].(map[string]any)
	if _, ok := ext["allowed"]; ok || ext["ratio_checks_per_sec"] != 2.0 {
		t.Errorf("redis-benchmark row %v: want no allowed, ratio 2", ext)
	}
	if skipped := rows[3].(map[string]any); skipped["skipped"] != "connect: refused" {
		t.Errorf("skipped row %v", skipped)
	}

	one := sampleReport()
	one.Rows = one.Rows[:1]
	b, err = json.Marshal(one)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "compare") {
		t.Errorf("one row has a compare list: %s", b)
	}
}

func TestReportString(t *testing.T) {
	s := sampleReport().String()
	for _, want := range []string{
		"library on redis-cluster (127.0.0.11:7000), sliding_log 1000 per 1h, cost 1, 10 keys, 4 callers, for 1s",
		"checks/s", "×tollgate", "p99.9", "1.00ms", "4.00ms", "8.00ms",
		"0.50", "2.00", // seed's and redis-benchmark's ratios
		"tollgate: timeout 2 (first: context deadline exceeded)",
		"redis_rate: skipped: connect: refused",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

// A row with a Base has its ratios to that row; a Base that names no row,
// or a skipped one, falls back to the first row, or to no ratio.
func TestReportRatioBase(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rows      []bench.Row
		wantRatio float64
		wantP99   float64
	}{
		{"to its base", []bench.Row{
			{Name: "tollgate", ChecksPerSec: 100, P99: time.Millisecond},
			{Name: "deny-store", ChecksPerSec: 50, P99: 4 * time.Millisecond},
			{Name: "deny-cached", ChecksPerSec: 1000, P99: time.Millisecond, Base: "deny-store"},
		}, 20, 0.25},
		{"unknown base: the first row", []bench.Row{
			{Name: "tollgate", ChecksPerSec: 100, P99: time.Millisecond},
			{Name: "x", ChecksPerSec: 1, P99: time.Millisecond},
			{Name: "deny-cached", ChecksPerSec: 1000, P99: 2 * time.Millisecond, Base: "nope"},
		}, 10, 2},
		{"skipped base: none", []bench.Row{
			{Name: "tollgate", ChecksPerSec: 100, P99: time.Millisecond},
			{Name: "deny-store", Skipped: "no store"},
			{Name: "deny-cached", ChecksPerSec: 1000, P99: time.Millisecond, Base: "deny-store"},
		}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bench.Report{Setup: bench.Setup{Target: "library", Units: 1, Window: time.Hour, Cost: "1"}, Rows: tc.rows}
			r.ComputeRatios()
			last := r.Rows[len(r.Rows)-1]
			if last.Ratio != tc.wantRatio || last.RatioP99 != tc.wantP99 {
				t.Errorf("ratios %v, %v; want %v, %v", last.Ratio, last.RatioP99, tc.wantRatio, tc.wantP99)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if want := `"ratio_to":"` + last.Base + `"`; !strings.Contains(string(b), want) {
				t.Errorf("JSON lacks %s: %s", want, b)
			}
			if s := r.String(); last.Skipped == "" && !strings.Contains(s, "deny-cached: ×tollgate columns are ratios to "+last.Base) {
				t.Errorf("table does not say what the ratios are to:\n%s", s)
			}
		})
	}
}
