package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every wait in these tests.
const wait = 5 * time.Second

func policyYAMLWith(units string) string {
	return "policies:\n  - name: p\n    units: " + units + "\n    window: 1m\n"
}

func TestHolderReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies.yaml")
	testutil.WriteAtomic(t, path, policyYAMLWith("1"))
	h, err := NewHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	units := func() int64 {
		p, ok := h.Policy("p")
		if !ok {
			t.Fatal("policy p missing")
		}
		return p.Limits[0].Units
	}
	if units() != 1 {
		t.Fatalf("units = %d", units())
	}

	testutil.WriteAtomic(t, path, policyYAMLWith("0"))
	if err := h.Reload(); err == nil || !strings.Contains(err.Error(), path+":3:") {
		t.Fatalf("Reload of an invalid file: %v", err)
	}
	if units() != 1 {
		t.Fatal("invalid reload replaced the config")
	}

	testutil.WriteAtomic(t, path, policyYAMLWith("2"))
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if units() != 2 {
		t.Fatalf("units = %d after reload", units())
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(); err == nil || units() != 2 {
		t.Fatalf("Reload of a missing file: %v, units %d", err, units())
	}
}

func TestNewHolderFails(t *testing.T) {
	if _, err := NewHolder(filepath.Join("testdata", "bad", "policy_zero_units.yaml")); err == nil {
		t.Error("NewHolder loaded a bad file")
	}
	if _, err := NewEnvoyHolder(filepath.Join("testdata", "bad", "envoy_duplicate_domain")); err == nil {
		t.Error("NewEnvoyHolder loaded a bad directory")
	}
}

// watcher runs Watch until the test ends and collects its notifications.
type watcher struct {
	ch chan error
}

func startWatch(t *testing.T, watch func(context.Context, time.Duration, func(error))) *watcher {
	t.Helper()
	w := &watcher{ch: make(chan error, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		watch(ctx, 5*time.Millisecond, func(err error) { w.ch <- err })
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return w
}

func (w *watcher) next(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.ch:
		return err
	case <-time.After(wait):
		t.Fatal("no notification")
		return nil
	}
}

func (w *watcher) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-w.ch:
		t.Fatalf("unexpected notification: %v", err)
	case <-time.After(d):
	}
}

func TestHolderWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies.yaml")
	testutil.WriteAtomic(t, path, policyYAMLWith("1"))
	h, err := NewHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, h.Watch)
	w.none(t, 50*time.Millisecond) // unchanged content is not a change

	testutil.WriteAtomic(t, path, policyYAMLWith("2"))
	if err := w.next(t); err != nil {
		t.Fatal(err)
	}
	if p, _ := h.Policy("p"); p.Limits[0].Units != 2 {
		t.Fatalf("units = %d after a change", p.Limits[0].Units)
	}

	testutil.WriteAtomic(t, path, policyYAMLWith("x"))
	if err := w.next(t); err == nil {
		t.Fatal("no error for an invalid change")
	}
	w.none(t, 50*time.Millisecond) // the same bad content is reported once
	if p, _ := h.Policy("p"); p.Limits[0].Units != 2 {
		t.Fatal("invalid change replaced the config")
	}

	// A symbolic link swapped to another file, as in a Kubernetes ConfigMap.
	dir := t.TempDir()
	target := filepath.Join(dir, "v3.yaml")
	testutil.WriteAtomic(t, target, policyYAMLWith("3"))
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Skip("no symbolic links:", err)
	}
	if err := os.Rename(link, path); err != nil {
		t.Fatal(err)
	}
	if err := w.next(t); err != nil {
		t.Fatal(err)
	}
	if p, _ := h.Policy("p"); p.Limits[0].Units != 3 {
		t.Fatalf("units = %d after a link swap", p.Limits[0].Units)
	}
}

func TestEnvoyHolderWatchDirectory(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteAtomic(t, filepath.Join(dir, "a.yaml"), "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	h, err := NewEnvoyHolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Match("b", e("k=v")); ok {
		t.Fatal("domain b matched before it exists")
	}
	w := startWatch(t, h.Watch)

	testutil.WriteAtomic(t, filepath.Join(dir, "b.yml"), "domain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 2}\n")
	if err := w.next(t); err != nil {
		t.Fatal(err)
	}
	if r, ok := h.Match("b", e("k=v")); !ok || r.Limit.Units != 2 {
		t.Fatalf("Match after adding b.yml = %+v, %t", r, ok)
	}

	testutil.WriteAtomic(t, filepath.Join(dir, "c.yaml"), "domain: a\n")
	if err := w.next(t); err == nil || !strings.Contains(err.Error(), `duplicate domain "a"`) {
		t.Fatalf("notification = %v, want a duplicate domain error", err)
	}
	if got := h.Config().Domains(); len(got) != 2 {
		t.Fatalf("Domains() = %v after a bad change", got)
	}

	if err := os.Remove(filepath.Join(dir, "c.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := w.next(t); err != nil {
		t.Fatal(err)
	}
}
