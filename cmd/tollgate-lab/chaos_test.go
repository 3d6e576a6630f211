package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/chaos"
)

// runChaosCmd runs `tollgate-lab chaos args…` and returns its stdout and
// stderr.
func runChaosCmd(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"chaos"}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// TestChaosCommand runs the command end to end on a cluster it starts: one
// CLIENT KILL under load. It checks the exit status, the summary table,
// and that the JSON report and the SVG chart were written and parse; the
// bounds are the harness's own.
func TestChaosCommand(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed:", err)
		}
		t.Skip("redis-server is not installed (scripts/test.sh installs it)")
	}
	dir := t.TempDir()
	stdout, stderr, err := runChaosCmd(t, 2*time.Minute, "--scenario", "client-kill", "--runs", "1", "--out", dir)
	if err != nil {
		t.Fatalf("exit: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	for _, want := range []string{"scenario", "fault", "healthy after", "recovered after", "bound", "stuck", "over limit", "lost", "calls/errors",
		"client-kill", "run 1: CLIENT KILL TYPE normal on every node", " ok"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "output in "+dir) || !strings.Contains(stderr, "run 1: CLIENT KILL TYPE normal on every node: healthy after") {
		t.Errorf("no output directory or progress line on stderr:\n%s", stderr)
	}

	b, err := os.ReadFile(filepath.Join(dir, "client-kill.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r chaos.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("client-kill.json: %v", err)
	}
	if r.Name != "client-kill" || len(r.Faults) != 1 || r.Totals.Calls == 0 || len(r.Timeline) == 0 || len(r.Accounting) != 1 {
		t.Errorf("report: name %q, %d faults, %d calls, %d buckets, %d key sets", r.Name, len(r.Faults), r.Totals.Calls, len(r.Timeline), len(r.Accounting))
	}

	svg, err := os.ReadFile(filepath.Join(dir, "client-kill.svg"))
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(svg))
	root, text := "", ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("client-kill.svg is not well-formed: %v", err)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = x.Name.Local
			}
		case xml.CharData:
			text += string(x)
		}
	}
	if root != "svg" || !strings.Contains(text, "fault 1: CLIENT KILL TYPE normal on every node") {
		t.Errorf("client-kill.svg: root %q, fault label missing", root)
	}
}

// TestChaosCommandErrors checks the flags refused before anything starts.
func TestChaosCommandErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown scenario", []string{"--scenario", "meteor"}, `unknown scenario "meteor"; scenarios: graceful-failover,`},
		{"runs", []string{"--runs", "0"}, "runs 0: want at least 1"},
		{"twice", []string{"--scenario", "client-kill,client-kill"}, "named twice"},
		{"process control on a given cluster", []string{"--addrs", "127.0.0.1:1", "--scenario", "kill-master"},
			`scenario "kill-master" kills and restarts nodes (process control), so it runs only on the cluster tollgate-lab chaos starts itself`},
		{"proxies on a given cluster", []string{"--addrs", "127.0.0.1:1"}, `scenario "kill-master"`},
		{"remote", []string{"--addrs", "10.1.2.3:6379", "--scenario", "client-kill"}, "not a loopback IP address"},
		{"unreachable", []string{"--addrs", "127.0.0.1:1", "--scenario", "client-kill"}, "no node answered CLUSTER NODES"},
		{"argument", []string{"now"}, "unknown command"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			_, _, err := runChaosCmd(t, 10*time.Second, append(c.args, "--out", dir)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
