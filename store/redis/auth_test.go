package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/store/redis"
)

// A password rotated on an ACL-protected Cluster under load (new password
// added, the store's source rewritten, the old one removed, every client
// connection killed) costs no request: each new connection asks for the
// credentials again. A wrong password then fails loudly: Ready fails with
// kind "auth" and an error is logged that names the cause, not the secret.
func TestCredentialRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const oldPass, newPass, wrongPass = "old-Secret-1", "new-Secret-2", "wrong-Secret-3"
	c, err := testcluster.Start(ctx, testcluster.Options{Password: oldPass, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	var current atomic.Value // the "file": what the next connection reads
	current.Store(oldPass)
	var asked atomic.Int64
	logs := &testutil.SyncBuffer{}
	s := open(t, redis.Options{
		Addrs:   c.Addrs()[:3],
		Cluster: true,
		Credentials: func() (string, string, error) {
			asked.Add(1)
			return "", current.Load().(string), nil
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	lim := tollgate.New(s, tollgate.Options{})
	limit := tollgate.PerHour(1 << 30)

	// Load: 4 callers over keys in every shard, each call within 1 s,
	// bounded in count and time.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			end := time.Now().Add(30 * time.Second)
			for i := 0; i < 50_000 && time.Now().Before(end); i++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, ccancel := context.WithTimeout(ctx, time.Second)
				_, err := lim.Consume(cctx, fmt.Sprintf("rot-%d-%d", w, i%512), 1, limit)
				ccancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); !cond(); {
			if time.Now().After(end) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("load", func() bool { return ok.Load() > 200 })

	each := func(args ...any) int64 {
		t.Helper()
		var n int64
		for _, node := range c.Nodes() {
			v, err := node.Do(ctx, args...)
			if err != nil {
				t.Fatalf("%s %v: %v", node.Addr, args, err)
			}
			if k, isInt := v.(int64); isInt {
				n += k
			}
		}
		return n
	}
	// Rotate as an operator would: add the new password, rewrite the
	// file, remove the old one, and point replication at the new one.
	each("ACL", "SETUSER", "default", ">"+newPass)
	c.SetPassword(newPass)
	current.Store(newPass)
	each("ACL", "SETUSER", "default", "<"+oldPass)
	each("CONFIG", "SET", "masterauth", newPass)
	before, askedBefore := ok.Load(), asked.Load()
	if killed := each("CLIENT", "KILL", "TYPE", "normal"); killed == 0 {
		t.Fatal("CLIENT KILL killed no connection")
	}
	waitFor("load after the kill", func() bool { return ok.Load() > before+500 })
	if asked.Load() == askedBefore {
		t.Error("no connection asked for credentials after CLIENT KILL")
	}
	close(stop)
	wg.Wait()
	t.Logf("rotation: %d consumes ok, %d failed; credentials asked %d times", ok.Load(), failed.Load(), asked.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d consumes failed across the rotation; first: %v", n, firstErr.Load())
	}
	if err := c.WaitHealthy(ctx); err != nil { // replicas re-authenticated
		t.Fatal(err)
	}

	// A wrong password fails loudly, and the secret stays out of sight.
	current.Store(wrongPass)
	each("CLIENT", "KILL", "TYPE", "normal")
	var rerr error
	waitFor("Ready to fail with kind auth", func() bool {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		defer rcancel()
		rerr = s.Ready(rctx)
		if redis.KindOf(rerr) != redis.KindAuth {
			t.Logf("Ready: %v", rerr)
		}
		return redis.KindOf(rerr) == redis.KindAuth
	})
	out := logs.String()
	if !strings.Contains(out, "authentication failed") || !strings.Contains(out, "WRONGPASS") {
		t.Errorf("no log line names the cause; log:\n%s", out)
	}
	for _, secret := range []string{oldPass, newPass, wrongPass} {
		if strings.Contains(out, secret) || strings.Contains(rerr.Error(), secret) {
			t.Errorf("the secret %q appears in the log or the error %q", secret, rerr)
		}
	}
	t.Logf("wrong password: Ready: %v", rerr)
}
