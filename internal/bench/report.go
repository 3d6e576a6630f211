package bench

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/header"
)

// Row is what one run measured.
type Row struct {
	// Name is what ran: "tollgate", "seed", "redis_rate", "redis-benchmark".
	Name string
	// Checks = Allowed + Denied + Errors, the checks answered or failed.
	Checks, Allowed, Denied, Errors int64
	// ErrorKinds counts errors by kind (see Kind); ErrorSamples holds the
	// first error message of each kind.
	ErrorKinds   map[string]int64
	ErrorSamples map[string]string
	// Elapsed is the run's wall time; ChecksPerSec is Checks / Elapsed,
	// the achieved rate.
	Elapsed      time.Duration
	ChecksPerSec float64
	// OfferedPerSec is the arrival rate of an open-loop run (Config.Rate),
	// whose latencies are from each check's scheduled start; 0 for a
	// closed-loop run.
	OfferedPerSec float64
	// Latency quantiles of answered checks (errors excluded), each within
	// 0.4% (see Histogram).
	P50, P90, P99, P999 time.Duration
	// ClientCPU is the CPU time (user + system) per check of the process
	// that made the checks: this one (the load generator and, in process,
	// the library or the service), or redis-benchmark for its rows.
	// ServerCPU is that of every Redis node (INFO cpu; replicas included)
	// during the load, when known. 0 when unknown.
	ClientCPU, ServerCPU time.Duration
	// StoppedBy is StoppedByCount, StoppedByDuration or StoppedByInterrupt.
	StoppedBy string
	// External marks figures from an external tool (redis-benchmark): only
	// Checks, ChecksPerSec, P50 and P99 are known.
	External bool
	// Ratio and RatioP99 are ChecksPerSec and P99 divided by those of the
	// row named Base, or of the first row (Tollgate's) when Base is empty
	// or names no row; 0 when unknown.
	Ratio, RatioP99 float64
	// Base names the row the ratios are to; "" means the first row.
	Base string
	// Skipped, when not empty, says why the row has no figures.
	Skipped string
	// Note is a remark on the row (keys not reset, …).
	Note string
	// hist holds the latencies the quantiles come from, for merging the
	// rounds of a row (mergeRounds); nil for External rows.
	hist *Histogram
}

// Setup describes what a Report ran.
type Setup struct {
	// Target is "library", "http" or "grpc"; Store is "memory", "redis" or
	// "redis-cluster" for the library; Addr is the store's, the service's
	// URL or address.
	Target, Store, Addr string
	// Units, Window and Algorithm are the limit checked; zero for gRPC,
	// where the service's rule applies.
	Units     int64
	Window    time.Duration
	Algorithm string
	// Limits, when not empty, were checked together instead.
	Limits []tollgate.Limit
	Cost   string
	Keys   int
	// Concurrency is the number of callers.
	Concurrency int
	// Rate is the open-loop arrival rate (Config.Rate); 0 for closed loop.
	Rate float64
	// MaxChecks (0: none) and MaxDuration are the run's bounds.
	MaxChecks   int64
	MaxDuration time.Duration
	// Rounds, above 1, is how many times a comparison ran its rows in
	// turn, each round for a share of the bounds (Comparison.Rounds).
	Rounds int
}

// Report is the result of `tollgate-lab bench`: one Row per run, Tollgate's
// first. String renders it as a table, MarshalJSON as one JSON object.
type Report struct {
	Setup Setup
	Rows  []Row
}

// ComputeRatios sets each row's Ratio and RatioP99 against its Base row,
// or the first row.
func (r *Report) ComputeRatios() {
	if len(r.Rows) == 0 {
		return
	}
	for i := range r.Rows {
		row := &r.Rows[i]
		row.Ratio, row.RatioP99 = 0, 0
		if row.Skipped != "" {
			continue
		}
		base := r.Rows[0]
		if row.Base != "" {
			if j := slices.IndexFunc(r.Rows, func(b Row) bool { return b.Name == row.Base }); j >= 0 {
				base = r.Rows[j]
			}
		}
		if base.Skipped != "" {
			continue
		}
		if base.ChecksPerSec > 0 {
			row.Ratio = row.ChecksPerSec / base.ChecksPerSec
		}
		if base.P99 > 0 && row.P99 > 0 {
			row.RatioP99 = float64(row.P99) / float64(base.P99)
		}
	}
}

// String renders the report as a table, a line per row, followed by the
// errors by kind and notes.
func (r Report) String() string {
	var b strings.Builder
	s := r.Setup
	fmt.Fprintf(&b, "tollgate-lab bench: %s", s.Target)
	if s.Store != "" {
		fmt.Fprintf(&b, " on %s", s.Store)
	}
	if s.Addr != "" {
		fmt.Fprintf(&b, " (%s)", s.Addr)
	}
	switch {
	case len(s.Limits) > 0:
		for i, l := range s.Limits {
			sep := ", "
			if i > 0 {
				sep = " + "
			}
			fmt.Fprintf(&b, "%s%s %d per %s", sep, l.Algorithm, l.Units, shortDuration(l.Window))
		}
	case s.Units == 0:
		b.WriteString(", the service's rule")
	default:
		fmt.Fprintf(&b, ", %s %d per %s", s.Algorithm, s.Units, shortDuration(s.Window))
	}
	if s.Rate > 0 {
		fmt.Fprintf(&b, ", cost %s, %d keys, open loop at %s checks/s, at most %d in flight, ", s.Cost, s.Keys, group(int64(math.Round(s.Rate))), s.Concurrency)
	} else {
		fmt.Fprintf(&b, ", cost %s, %d keys, %d callers, ", s.Cost, s.Keys, s.Concurrency)
	}
	if s.MaxChecks > 0 {
		fmt.Fprintf(&b, "at most %s checks or %s", group(s.MaxChecks), shortDuration(s.MaxDuration))
	} else {
		fmt.Fprintf(&b, "for %s", shortDuration(s.MaxDuration))
	}
	if s.Rounds > 1 {
		fmt.Fprintf(&b, " a row, in %d rounds run in turn", s.Rounds)
	}
	b.WriteString("\n\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	compare := len(r.Rows) > 1
	var open bool
	for _, row := range r.Rows {
		open = open || row.OfferedPerSec > 0
	}
	header := "\t"
	if open {
		header += "offered/s\t"
	}
	header += "checks/s\t"
	if compare {
		header += "×tollgate\t"
	}
	header += "checks\tallowed\tdenied\terrors\tp50\tp90\tp99\tp99.9\t"
	if compare {
		header += "p99 ×tollgate\t"
	}
	var cliCPU, srvCPU bool
	for _, row := range r.Rows {
		cliCPU = cliCPU || row.ClientCPU > 0
		srvCPU = srvCPU || row.ServerCPU > 0
	}
	if cliCPU {
		header += "cpu/check\t"
	}
	if srvCPU {
		header += "redis cpu/check\t"
	}
	fmt.Fprintln(tw, header+"stopped by\t")
	width := 0 // names are padded to one width: left-aligned in right-aligned columns
	for _, row := range r.Rows {
		width = max(width, utf8.RuneCountInString(row.Name))
	}
	for _, row := range r.Rows {
		if row.Skipped != "" {
			continue
		}
		dash := func(v string) string {
			if row.External {
				return "-"
			}
			return v
		}
		line := row.Name + strings.Repeat(" ", width-utf8.RuneCountInString(row.Name)) + "\t"
		if open {
			line += dash(group(int64(math.Round(row.OfferedPerSec)))) + "\t"
		}
		line += group(int64(math.Round(row.ChecksPerSec))) + "\t"
		if compare {
			line += ratio(row.Ratio) + "\t"
		}
		line += group(row.Checks) + "\t" + dash(group(row.Allowed)) + "\t" + dash(group(row.Denied)) + "\t" +
			dash(group(row.Errors)) + "\t" + latency(row.P50) + "\t" + dash(latency(row.P90)) + "\t" +
			latency(row.P99) + "\t" + dash(latency(row.P999)) + "\t"
		if compare {
			line += ratio(row.RatioP99) + "\t"
		}
		if cliCPU {
			line += latency(row.ClientCPU) + "\t"
		}
		if srvCPU {
			line += latency(row.ServerCPU) + "\t"
		}
		line += row.StoppedBy + "\t"
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()

	var errs, notes []string
	for _, row := range r.Rows {
		for _, k := range slices.Sorted(maps.Keys(row.ErrorKinds)) {
			errs = append(errs, fmt.Sprintf("  %s: %s %s (first: %s)", row.Name, k, group(row.ErrorKinds[k]), row.ErrorSamples[k]))
		}
		if row.Skipped != "" {
			notes = append(notes, fmt.Sprintf("  %s: skipped: %s", row.Name, row.Skipped))
		}
		if row.Note != "" {
			notes = append(notes, fmt.Sprintf("  %s: %s", row.Name, row.Note))
		}
		if row.Base != "" && row.Skipped == "" {
			notes = append(notes, fmt.Sprintf("  %s: ×tollgate columns are ratios to %s", row.Name, row.Base))
		}
	}
	if len(errs) > 0 {
		b.WriteString("\nerrors by kind:\n" + strings.Join(errs, "\n") + "\n")
	}
	if len(notes) > 0 {
		b.WriteString("\nnotes:\n" + strings.Join(notes, "\n") + "\n")
	}
	if compare {
		b.WriteString("\n×tollgate: the row's figure divided by Tollgate's (checks/s: above 1 is faster; p99: above 1 is slower).\n")
	}
	if open {
		b.WriteString("offered/s: the fixed arrival rate (open loop); checks/s: the rate achieved; latencies from each check's scheduled start.\n")
	}
	if cliCPU || srvCPU {
		b.WriteString("cpu/check: CPU time per check of the process that checked (this one; redis-benchmark for its rows); redis cpu/check: of every Redis node, replicas included.\n")
	}
	return b.String()
}

// group formats n with thousands separators.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ratio(f float64) string {
	if f == 0 {
		return "-"
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// latency formats d with three significant digits at most.
func latency(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "µs"}} {
		if d >= u.unit {
			return sig3(float64(d)/float64(u.unit)) + u.name
		}
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

// sig3 formats v (at least 1) with three significant digits, or as an
// integer from 100 up.
func sig3(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// shortDuration formats d as limit names show windows ("1h", "90s").
func shortDuration(d time.Duration) string { return header.FormatWindow(d) }

// rowJSON is a Row in JSON: durations in milliseconds.
type rowJSON struct {
	Name         string            `json:"name"`
	ChecksPerSec float64           `json:"checks_per_sec"`
	Offered      float64           `json:"offered_per_sec,omitempty"`
	Checks       int64             `json:"checks"`
	Allowed      *int64            `json:"allowed,omitempty"`
	Denied       *int64            `json:"denied,omitempty"`
	Errors       *int64            `json:"errors,omitempty"`
	ErrorKinds   map[string]int64  `json:"errors_by_kind,omitempty"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	ElapsedSec   float64           `json:"elapsed_sec"`
	P50          float64           `json:"p50_ms"`
	P90          *float64          `json:"p90_ms,omitempty"`
	P99          float64           `json:"p99_ms"`
	P999         *float64          `json:"p999_ms,omitempty"`
	ClientCPU    float64           `json:"cpu_us_per_check,omitempty"`
	ServerCPU    float64           `json:"redis_cpu_us_per_check,omitempty"`
	StoppedBy    string            `json:"stopped_by,omitempty"`
	Ratio        float64           `json:"ratio_checks_per_sec,omitempty"`
	RatioP99     float64           `json:"ratio_p99,omitempty"`
	RatioTo      string            `json:"ratio_to,omitempty"`
	Skipped      string            `json:"skipped,omitempty"`
	Note         string            `json:"note,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func (row Row) json() rowJSON {
	j := rowJSON{
		Name: row.Name, ChecksPerSec: row.ChecksPerSec, Offered: row.OfferedPerSec, Checks: row.Checks,
		ElapsedSec: row.Elapsed.Seconds(), P50: ms(row.P50), P99: ms(row.P99),
		ClientCPU: us(row.ClientCPU), ServerCPU: us(row.ServerCPU),
		StoppedBy: row.StoppedBy, Ratio: row.Ratio, RatioP99: row.RatioP99, RatioTo: row.Base, Skipped: row.Skipped, Note: row.Note,
	}
	if !row.External && row.Skipped == "" {
		j.Allowed, j.Denied, j.Errors = &row.Allowed, &row.Denied, &row.Errors
		p90, p999 := ms(row.P90), ms(row.P999)
		j.P90, j.P999 = &p90, &p999
		j.ErrorKinds, j.ErrorSamples = row.ErrorKinds, row.ErrorSamples
		if j.ErrorKinds == nil {
			j.ErrorKinds = map[string]int64{}
		}
	}
	return j
}

// MarshalJSON renders the report as one object: the setup, then the first
// (Tollgate's) row's figures at the top level, and with more rows a
// "compare" list of all rows, each with its ratios to the first (or, with
// "ratio_to", to the row it names).
func (r Report) MarshalJSON() ([]byte, error) {
	type setupJSON struct {
		Target      string   `json:"target"`
		Store       string   `json:"store,omitempty"`
		Addr        string   `json:"addr,omitempty"`
		Units       int64    `json:"limit,omitempty"`
		Window      string   `json:"window,omitempty"`
		Algorithm   string   `json:"algorithm,omitempty"`
		Limits      []string `json:"limits,omitempty"`
		Cost        string   `json:"cost"`
		Keys        int      `json:"keys"`
		Concurrency int      `json:"concurrency"`
		Rate        float64  `json:"rate,omitempty"`
		MaxChecks   int64    `json:"max_checks"`
		MaxDuration float64  `json:"max_duration_sec"`
		Rounds      int      `json:"rounds,omitempty"`
	}
	s := r.Setup
	window := ""
	if s.Window > 0 {
		window = shortDuration(s.Window)
	}
	out := struct {
		setupJSON
		rowJSON
		Compare []rowJSON `json:"compare,omitempty"`
	}{
		setupJSON: setupJSON{s.Target, s.Store, s.Addr, s.Units, window, s.Algorithm, nil, s.Cost,
			s.Keys, s.Concurrency, s.Rate, s.MaxChecks, s.MaxDuration.Seconds(), s.Rounds},
	}
	for _, l := range s.Limits {
		out.Limits = append(out.Limits, l.String())
	}
	if len(r.Rows) > 0 {
		out.rowJSON = r.Rows[0].json()
	}
	if len(r.Rows) > 1 {
		for _, row := range r.Rows {
			out.Compare = append(out.Compare, row.json())
		}
	}
	return json.Marshal(out)
}
