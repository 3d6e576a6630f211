package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/internal/chaos"
	"github.com/tollgate/tollgate/internal/chaos/harness"
	"github.com/tollgate/tollgate/internal/chaos/plot"
)

// chaosConfig is what `tollgate-lab chaos` runs with.
type chaosConfig struct {
	Suite harness.SuiteConfig
	// PNG also draws each chart as PNG; JSON prints the results as JSON;
	// Verbose prints the scenarios' log lines on stderr.
	PNG, JSON, Verbose bool
}

func newChaosCmd() *cobra.Command {
	var cfg chaosConfig
	var scenarios strings.Builder
	for _, d := range harness.Defs() {
		needs := ""
		if d.Needs != 0 {
			needs = " [own cluster only]"
		}
		fmt.Fprintf(&scenarios, "  %-18s %s%s\n", d.Name, d.Doc, needs)
	}
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Inject faults into a local Redis Cluster under load and measure how Tollgate recovers",
		Long: `Start a local Redis Cluster (3 masters, 3 replicas on 127.0.0.11-16, free
ports, data in a temp dir; redis-server must be on PATH), run a bounded load
of Tollgate consumes on about a thousand keys from 3 clients, inject each
scenario's faults one after the other, and measure for each: when the
cluster was healthy again, when every hash slot had served a call again,
the bound it is held to, slots stuck failing, units allowed over a limit and
acknowledged units lost. Scenarios that need fault proxies run on a second
cluster whose nodes are reached through proxies.

Writes per scenario, into --out: <scenario>.json (the timeline in 100 ms
buckets, markers, faults, accounting) and <scenario>.svg (ok calls/s and
errors/s by kind over time, faults and recoveries marked). Prints a line
per fault as it goes and a summary table at the end; exits non-zero when a
bound was missed, a slot stuck, or a unit went over a limit or was lost
where the scenario allows no loss. Ctrl-C stops the run, writes what was
measured and stops the clusters.

With --addrs, uses a running cluster on loopback instead of starting one;
only the scenarios that need neither process control nor fault proxies can
run there (graceful-failover, client-kill, slot-migration, reshard). Its
roles and slots change, and keys named chaos:* are written to it.

Scenarios:
` + scenarios.String(),
		Example: `  tollgate-lab chaos
  tollgate-lab chaos --scenario client-kill,graceful-failover --runs 2 --out /tmp/chaos
  tollgate-lab chaos --addrs 127.0.0.1:7000 --scenario graceful-failover --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runChaos(ctx, cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringSliceVar(&cfg.Suite.Scenarios, "scenario", harness.DefaultScenarios(), "scenarios to run, in order (comma-separated; see above)")
	f.IntVar(&cfg.Suite.Runs, "runs", 1, "how many times each scenario repeats its faults")
	f.StringVar(&cfg.Suite.Out, "out", "", "`directory` for the JSON reports and charts (default: a new tollgate-chaos-* directory in the current one)")
	f.StringSliceVar(&cfg.Suite.Addrs, "addrs", nil, "`HOST:PORT` of a running Redis Cluster on loopback to use instead of starting one")
	f.StringVar(&cfg.Suite.RedisServer, "redis-server", "", "redis-server `binary` for the clusters it starts (default: from PATH)")
	f.BoolVar(&cfg.PNG, "png", false, "also draw each chart as PNG")
	f.BoolVar(&cfg.JSON, "json", false, "print the results as one JSON object instead of the table")
	f.BoolVar(&cfg.Verbose, "verbose", false, "print the scenarios' log lines on stderr")
	return cmd
}

// chaosResult is one scenario in --json output.
type chaosResult struct {
	Scenario string        `json:"scenario"`
	Passed   bool          `json:"passed"`
	Report   string        `json:"report,omitempty"`
	Charts   []string      `json:"charts,omitempty"`
	Faults   []chaos.Fault `json:"faults"`
	Failures []string      `json:"failures,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// errChaosFailed is returned when a scenario failed a check, so that the
// command exits non-zero after printing its results.
var errChaosFailed = errors.New("tollgate-lab chaos: a scenario failed")

// runChaos runs the suite cfg describes, draws the charts and prints the
// results on stdout; progress goes to stderr.
func runChaos(ctx context.Context, cfg chaosConfig, stdout, stderr io.Writer) error {
	if cfg.Suite.Out == "" {
		// Checked first, so that a bad flag leaves no directory behind.
		s := cfg.Suite
		s.Out = "-"
		if _, err := s.Check(); err != nil {
			return err
		}
		dir, err := os.MkdirTemp(".", "tollgate-chaos-"+time.Now().Format("20060102-150405")+"-")
		if err != nil {
			return fmt.Errorf("tollgate-lab chaos: %w", err)
		}
		cfg.Suite.Out = dir
	}
	if abs, err := filepath.Abs(cfg.Suite.Out); err == nil {
		cfg.Suite.Out = abs
	}
	if _, err := cfg.Suite.Check(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "tollgate-lab chaos: scenarios %s, %d run(s) each; output in %s\n", strings.Join(scenarioNames(cfg.Suite), ", "), cfg.Suite.Runs, cfg.Suite.Out)
	if cfg.Verbose {
		cfg.Suite.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, "  "+format+"\n", args...) }
	}
	cfg.Suite.OnScenario = func(d harness.Def) { fmt.Fprintf(stderr, "%s: %s\n", d.Name, d.Doc) }
	cfg.Suite.OnFault = func(d harness.Def, f chaos.Fault, failures []string) {
		verdict := "ok"
		if len(failures) > 0 || len(f.Stuck) > 0 {
			verdict = "FAIL: " + strings.Join(failures, "; ")
		}
		fmt.Fprintf(stderr, "  %s: healthy after %v, recovered after %v (bound %v), stuck %d, calls %d, errors %d: %s\n",
			f.Name, ms(f.HealthyMS), ms(f.RecoveryMS), ms(f.BoundMS), len(f.Stuck), f.Calls.Calls, f.Calls.Failed(), verdict)
	}
	if err := os.MkdirAll(cfg.Suite.Out, 0o755); err != nil {
		return fmt.Errorf("tollgate-lab chaos: %w", err)
	}

	results, runErr := harness.RunSuite(ctx, cfg.Suite)
	failed := false
	var out []chaosResult
	for _, r := range results {
		cr := chaosResult{Scenario: r.Def.Name, Report: r.Path, Faults: r.Report.Faults, Failures: r.Failures}
		if r.Err != nil {
			cr.Error = r.Err.Error()
		}
		if r.Path != "" {
			charts, err := plot.Write(r.Report, cfg.Suite.Out, cfg.PNG)
			if err != nil {
				runErr = errors.Join(runErr, err)
			}
			cr.Charts = charts
		}
		cr.Passed = !r.Failed()
		for _, f := range r.Report.Faults {
			cr.Passed = cr.Passed && !harness.FaultFailed(r.Def, f)
		}
		failed = failed || !cr.Passed
		out = append(out, cr)
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"out": cfg.Suite.Out, "passed": !failed && runErr == nil, "scenarios": out}); err != nil {
			return err
		}
	} else if len(results) > 0 {
		fmt.Fprint(stdout, harness.Summary(results))
		for _, r := range out {
			for _, f := range r.Failures {
				fmt.Fprintf(stdout, "%s: FAIL: %s\n", r.Scenario, firstLine(f))
			}
			fmt.Fprintf(stdout, "%s: %s\n", r.Scenario, strings.Join(append([]string{r.Report}, r.Charts...), " "))
		}
	}
	switch {
	case runErr != nil:
		return fmt.Errorf("tollgate-lab chaos: %w", runErr)
	case failed:
		return errChaosFailed
	}
	return nil
}

func scenarioNames(c harness.SuiteConfig) []string {
	if len(c.Scenarios) == 0 {
		return harness.DefaultScenarios()
	}
	return c.Scenarios
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// firstLine returns s up to its first newline: failures may carry a
// timeline, which the JSON report holds anyway.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
