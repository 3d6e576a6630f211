package bench

import (
	"slices"
	"strings"
	"time"
)

// mergeRounds merges the rows of several rounds of a comparison, which ran
// the same rows in the same order, into one row each: counts, time and CPU
// add up, and the latency quantiles come from the rounds' merged
// histograms. A round in which a row was skipped adds nothing to it; a row
// skipped in every round stays skipped. redis-benchmark's rows (External)
// have no histogram: their P50 and P99 are the check-weighted means of the
// rounds', as their Note says.
func mergeRounds(rounds [][]Row) []Row {
	if len(rounds) == 1 {
		return rounds[0]
	}
	out := make([]Row, len(rounds[0]))
	for i := range out {
		var ran []Row
		for _, rows := range rounds {
			if i < len(rows) && rows[i].Skipped == "" {
				ran = append(ran, rows[i])
			}
		}
		if len(ran) == 0 {
			out[i] = rounds[0][i]
			continue
		}
		out[i] = mergeRow(ran)
	}
	return out
}

// mergeRow merges the rounds of one row, none of them skipped.
func mergeRow(rows []Row) Row {
	m := Row{Name: rows[0].Name, OfferedPerSec: rows[0].OfferedPerSec, External: rows[0].External, Base: rows[0].Base}
	var hist Histogram
	var client, server, p50, p99 time.Duration
	serverKnown := true
	var notes []string
	for _, r := range rows {
		m.Checks += r.Checks
		m.Allowed += r.Allowed
		m.Denied += r.Denied
		m.Errors += r.Errors
		m.Elapsed += r.Elapsed
		for k, n := range r.ErrorKinds {
			if m.ErrorKinds == nil {
				m.ErrorKinds, m.ErrorSamples = map[string]int64{}, map[string]string{}
			}
			m.ErrorKinds[k] += n
			if _, ok := m.ErrorSamples[k]; !ok {
				m.ErrorSamples[k] = r.ErrorSamples[k]
			}
		}
		client += r.ClientCPU * time.Duration(r.Checks)
		server += r.ServerCPU * time.Duration(r.Checks)
		serverKnown = serverKnown && (r.ServerCPU > 0 || r.Checks == 0)
		p50 += r.P50 * time.Duration(r.Checks)
		p99 += r.P99 * time.Duration(r.Checks)
		if r.hist != nil {
			hist.Merge(r.hist)
		}
		if m.StoppedBy != StoppedByInterrupt {
			m.StoppedBy = r.StoppedBy
		}
		if r.Note != "" && !slices.Contains(notes, r.Note) {
			notes = append(notes, r.Note)
		}
	}
	if m.External {
		notes = append(notes, "p50 and p99: means of the rounds'")
	}
	m.Note = strings.Join(notes, "; ")
	if m.Elapsed > 0 {
		m.ChecksPerSec = float64(m.Checks) / m.Elapsed.Seconds()
	}
	if m.Checks == 0 {
		return m
	}
	n := time.Duration(m.Checks)
	m.ClientCPU = client / n
	if serverKnown {
		m.ServerCPU = server / n
	}
	if m.External {
		m.P50, m.P99 = p50/n, p99/n
		return m
	}
	m.hist = &hist
	m.P50, m.P90, m.P99, m.P999 = hist.Quantile(0.50), hist.Quantile(0.90), hist.Quantile(0.99), hist.Quantile(0.999)
	return m
}
