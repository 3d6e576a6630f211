package service

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/settings"
)

// The password file is read again for each new connection: a password
// rotated on the server while the service runs (added, file rewritten, old
// one removed, connections killed) costs no request. A wrong one makes
// /readyz answer 503 "store unavailable" and logs the cause, never the
// secret.
func TestServePasswordRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const oldPass, newPass, wrongPass = "old-Secret-1", "new-Secret-2", "wrong-Secret-3"
	srv, err := testcluster.StartStandalone(ctx, testcluster.Options{Password: oldPass, Logf: t.Logf})
	if errors.Is(err, testcluster.ErrNoServer) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	dir := t.TempDir()
	file := testutil.WriteTemp(t, dir, "redis-password", oldPass+"\r\n")
	cfg := testConfig()
	cfg.Redis = settings.Redis{Addr: srv.Addr, PasswordFile: file}
	s := serve(t, cfg)

	redisDo := func(args ...any) {
		t.Helper()
		if _, err := srv.Do(ctx, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	consume := func(when string) {
		t.Helper()
		if r := post(t, s.http, "/v1/consume", `{"key":"k","limit":1000,"window":"1m"}`); r.status != 200 {
			t.Fatalf("consume %s: %d %s", when, r.status, r.body)
		}
	}
	ready := func() (int, string) {
		t.Helper()
		resp, err := (&http.Client{Timeout: testutil.Wait}).Get("http://" + s.http + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	consume("before the rotation")

	redisDo("ACL", "SETUSER", "default", ">"+newPass)
	srv.SetPassword(newPass)
	testutil.WriteTemp(t, dir, "redis-password", newPass+"\n")
	redisDo("ACL", "SETUSER", "default", "<"+oldPass)
	redisDo("CLIENT", "KILL", "TYPE", "normal")
	consume("after the rotation")
	if code, body := ready(); code != 200 {
		t.Fatalf("/readyz after the rotation: %d %s", code, body)
	}

	testutil.WriteTemp(t, dir, "redis-password", wrongPass+"\n")
	redisDo("CLIENT", "KILL", "TYPE", "normal")
	code, body := ready()
	for end := time.Now().Add(testutil.Wait); code != 503 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		code, body = ready()
	}
	if code != 503 || !strings.Contains(body, `"message":"store unavailable"`) || strings.Contains(body, "WRONGPASS") || strings.Contains(body, srv.Addr) {
		t.Errorf("/readyz with a wrong password: %d %s; want 503 store unavailable, without internals", code, body)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "authentication failed") || !strings.Contains(logs, "WRONGPASS") {
		t.Errorf("no log line names the cause:\n%s", logs)
	}
	for _, secret := range []string{oldPass, newPass, wrongPass} {
		if strings.Contains(logs, secret) || strings.Contains(body, secret) {
			t.Errorf("secret %q in the log or /readyz", secret)
		}
	}
}
