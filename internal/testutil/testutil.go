// Package testutil holds the few helpers the service's, its command's and
// the config's tests share: a log sink safe for concurrent writers, a wait
// for a log line, and files written whole.
package testutil

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Wait bounds every wait of these tests for the service.
const Wait = 5 * time.Second

// SyncBuffer is a log sink safe for the server's goroutines.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitLog waits up to Wait until the logs contain all of subs on one line
// and returns that line.
func WaitLog(t testing.TB, logs *SyncBuffer, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for {
		for line := range strings.Lines(logs.String()) {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(line, s)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", subs, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WriteTemp writes a file in dir and returns its path.
func WriteTemp(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteAtomic replaces the file at path in one step (a new file renamed
// over it), as deploy and config management tools do, so that a watcher
// never reads it half written.
func WriteAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
