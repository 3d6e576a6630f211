package chaos

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Fault is what one injected fault did to the callers, as a scenario
// measured it. Times are milliseconds; offsets are from the run's beginning.
type Fault struct {
	Name string `json:"name"`
	// AtMS is when the fault was injected; HealthyMS, how long after it the
	// cluster reported itself healthy again.
	AtMS      int64 `json:"at_ms"`
	HealthyMS int64 `json:"healthy_after_ms"`
	// Idle: the load was paused across the fault, and recovery counts from
	// ResumeMS, when it resumed.
	Idle     bool  `json:"idle,omitempty"`
	ResumeMS int64 `json:"resume_ms,omitempty"`
	// RecoveryMS is how long after the fault (or the resume) every slot of
	// the key set had served a call again; BoundMS, what the scenario
	// allows. Unrecovered lists slots that never did.
	RecoveryMS  int64 `json:"recovery_ms"`
	BoundMS     int64 `json:"bound_ms"`
	Unrecovered []int `json:"unrecovered,omitempty"`
	// MaxOutageMS is the longest outage of one slot from the fault on, and
	// OutageSlots how many slots had one.
	MaxOutageMS   int64 `json:"max_outage_ms"`
	MaxOutageSlot int   `json:"max_outage_slot"`
	OutageSlots   int   `json:"outage_slots"`
	// Stuck lists slots that kept failing for more than StuckLimit after the
	// cluster was healthy.
	Stuck []int `json:"stuck"`
	// IdleRecoveryMS is how long after an idle period following the fault
	// every slot served again; -1 when there was none.
	IdleRecoveryMS int64 `json:"idle_recovery_ms"`
	// Calls counts the calls from the fault to the end of its step.
	Calls Counts `json:"calls"`
	// KeySet names the key set the fault was measured on; LostUnits and
	// OverLimitUnits are that key set's Accounting.Lost and OverLimit
	// (shared by the faults that share the key set).
	KeySet         string `json:"key_set"`
	LostUnits      int64  `json:"lost_units"`
	OverLimitUnits int64  `json:"over_limit_units"`
	// Notes holds observations, such as the redirect a probe saw.
	Notes []string `json:"notes,omitempty"`
	// Failures lists the checks the fault failed: a missed bound, stuck
	// slots. Empty when it passed.
	Failures []string `json:"failures,omitempty"`
}

// Report is a run as JSON: the configuration, the timeline, markers, faults
// and accounting.
type Report struct {
	Name        string              `json:"name"`
	Start       time.Time           `json:"start"`
	DurationMS  int64               `json:"duration_ms"`
	Limiters    int                 `json:"limiters"`
	Rate        float64             `json:"rate"`
	Limit       string              `json:"limit"`
	OpTimeoutMS int64               `json:"op_timeout_ms"`
	BucketMS    int64               `json:"bucket_ms"`
	Launched    int                 `json:"launched"`
	Skipped     int                 `json:"skipped"`
	Exhausted   string              `json:"exhausted,omitempty"`
	Totals      Counts              `json:"totals"`
	Samples     map[string][]string `json:"error_samples,omitempty"`
	Markers     []ReportMarker      `json:"markers"`
	Faults      []Fault             `json:"faults"`
	Accounting  []Accounting        `json:"accounting"`
	Timeline    []Bucket            `json:"timeline"`
}

// ReportMarker is a Marker in JSON.
type ReportMarker struct {
	AtMS   int64  `json:"t_ms"`
	Name   string `json:"name"`
	Detail string `json:"detail,omitempty"`
}

// Report renders the run so far; the caller adds Faults and Accounting.
func (l *Load) Report(name string) Report {
	now := time.Now()
	l.mu.Lock()
	r := Report{
		Name:        name,
		Start:       l.begin,
		DurationMS:  now.Sub(l.begin).Milliseconds(),
		Limiters:    len(l.cfg.Limiters),
		Rate:        l.cfg.Rate,
		Limit:       l.cfg.Limit.String(),
		OpTimeoutMS: l.cfg.OpTimeout.Milliseconds(),
		BucketMS:    l.cfg.Bucket.Milliseconds(),
		Launched:    l.launched,
		Skipped:     l.skipped,
		Exhausted:   l.exhaust,
		Samples:     map[string][]string{},
	}
	for k, s := range l.samples {
		r.Samples[k.String()] = slices.Clone(s)
	}
	for _, m := range l.markers {
		r.Markers = append(r.Markers, ReportMarker{AtMS: m.At.Milliseconds(), Name: m.Name, Detail: m.Detail})
	}
	l.mu.Unlock()
	r.Timeline = l.Timeline(l.begin, now)
	for _, b := range r.Timeline {
		r.Totals.Calls += b.Calls
		r.Totals.OK += b.OK
		r.Totals.Allowed += b.Allowed
		r.Totals.Denied += b.Denied
		r.Totals.Overran += b.Overran
		r.Totals.Skipped += b.Skipped
		r.Totals.MaxLatencyMS = max(r.Totals.MaxLatencyMS, b.MaxLatencyMS)
		for k, n := range b.Errors {
			if r.Totals.Errors == nil {
				r.Totals.Errors = map[string]int{}
			}
			r.Totals.Errors[k] += n
		}
	}
	return r
}

// Write writes the report as dir/<name>.json and returns the path.
func (r Report) Write(dir string) (string, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, r.Name+".json")
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("chaos: %w", err)
	}
	return p, nil
}

// ErrorKinds returns the error kinds of c in name order, for logs.
func (c Counts) ErrorKinds() []string { return slices.Sorted(maps.Keys(c.Errors)) }
