package service

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testutil"
)

func policyWithUnits(units int) string {
	return fmt.Sprintf("policies:\n  - name: p\n    units: %d\n    window: 1h\n", units)
}

// waitStatus consumes until the answer has the wanted status.
func waitStatus(t *testing.T, addr, body string, want int) {
	t.Helper()
	deadline := time.Now().Add(testutil.Wait)
	for {
		resp := post(t, addr, "/v1/peek", body)
		if resp.status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d %s, want %d", body, resp.status, resp.body, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeHotReload(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Config = filepath.Join(dir, "tollgate.yaml")
	testutil.WriteAtomic(t, cfg.Config, policyWithUnits(1))
	cfg.Check.ReloadInterval = 20 * time.Millisecond
	s := serve(t, cfg)
	const consume = `{"key":"k","policy":"p"}`
	status := func() int { return post(t, s.http, "/v1/consume", consume).status }

	if got := status(); got != 200 {
		t.Fatalf("first consume: %d", got)
	}
	if got := status(); got != 429 {
		t.Fatalf("second consume under 1 unit: %d", got)
	}

	// A new valid file takes effect.
	testutil.WriteAtomic(t, cfg.Config, policyWithUnits(3))
	waitStatus(t, s.http, consume, 200)
	testutil.WaitLog(t, s.logs, `"msg":"config reloaded"`, `"policies":1`)
	if got := status(); got != 200 { // 2 of 3
		t.Fatalf("consume under 3 units: %d", got)
	}

	// An invalid one is logged and ignored.
	testutil.WriteAtomic(t, cfg.Config, policyWithUnits(0))
	line := testutil.WaitLog(t, s.logs, `"msg":"config not reloaded; the previous one stays in force"`)
	if !strings.Contains(line, `"level":"ERROR"`) || !strings.Contains(line, cfg.Config+":3:") {
		t.Errorf("reload error record: %s", line)
	}
	if got := status(); got != 200 { // 3 of 3: still the old policy
		t.Errorf("consume after an invalid reload: %d, want 200 (3 units still in force)", got)
	}
	if got := status(); got != 429 {
		t.Errorf("consume over 3 units: %d, want 429", got)
	}

	// A removed policy is unknown once the new file is in force.
	testutil.WriteAtomic(t, cfg.Config, "policies:\n  - name: q\n    units: 1\n    window: 1h\n")
	waitStatus(t, s.http, consume, 400)

	// A changed server section is reported, not applied.
	testutil.WriteAtomic(t, cfg.Config, "server:\n  listen: 127.0.0.1:9\npolicies: []\n")
	testutil.WaitLog(t, s.logs, `"msg":"the server section changed; it applies at the next start"`)
}

func TestServeHotReloadEnvoy(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.GRPC.EnvoyConfig = filepath.Join(dir, "envoy")
	if err := os.Mkdir(cfg.GRPC.EnvoyConfig, 0o700); err != nil {
		t.Fatal(err)
	}
	rules := func(n int) string {
		return fmt.Sprintf("domain: test\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: %d}\n", n)
	}
	file := filepath.Join(cfg.GRPC.EnvoyConfig, "test.yaml")
	testutil.WriteAtomic(t, file, rules(1))
	cfg.Check.ReloadInterval = 20 * time.Millisecond
	s := serve(t, cfg)
	conn := dialRLS(t, s.grpc)

	if got := overallCode(t, conn, "user=a"); got != "OK" {
		t.Fatalf("first call: %s", got)
	}
	if got := overallCode(t, conn, "user=a"); got != "OVER_LIMIT" {
		t.Fatalf("second call: %s", got)
	}
	testutil.WriteAtomic(t, file, rules(5))
	testutil.WaitLog(t, s.logs, `"msg":"envoy configs reloaded"`)
	if got := overallCode(t, conn, "user=a"); got != "OK" {
		t.Errorf("after raising the limit: %s", got)
	}
	testutil.WriteAtomic(t, file, "domain: test\ndescriptors:\n  - key: user\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n")
	testutil.WaitLog(t, s.logs, `"msg":"envoy configs not reloaded; the previous ones stay in force"`, "fortnight")
	if got := overallCode(t, conn, "user=a"); got != "OK" { // 3 of 5
		t.Errorf("after an invalid reload: %s, want OK", got)
	}
}

func TestServeReloadOnSignal(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Config = filepath.Join(dir, "tollgate.yaml")
	testutil.WriteAtomic(t, cfg.Config, policyWithUnits(1))
	cfg.Check.ReloadInterval = time.Hour // only the signal reloads
	hup := make(chan os.Signal, 1)
	cfg.Reload = hup
	s := serve(t, cfg)
	const consume = `{"key":"k","policy":"p"}`
	post(t, s.http, "/v1/consume", consume)
	testutil.WriteAtomic(t, cfg.Config, policyWithUnits(2))
	if got := post(t, s.http, "/v1/peek", consume).status; got != 429 {
		t.Fatalf("reloaded without a signal: %d", got)
	}
	hup <- nil
	waitStatus(t, s.http, consume, 200)
}
