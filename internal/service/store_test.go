package service

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/settings"
	"github.com/tollgate/tollgate/store/memory"
)

func TestRedisPasswordFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, file, want, err string
	}{
		{"first line", write("a", "s3cret\nignored\n"), "s3cret", ""},
		{"crlf", write("b", "s3cret\r\n"), "s3cret", ""},
		{"crlf then more", write("d", "s3cret\r\nignored\r\n"), "s3cret", ""},
		{"no line end", write("e", "s3cret"), "s3cret", ""},
		{"empty", write("c", "\n"), "", "empty"},
		{"empty first line", write("f", "\r\nsecond\n"), "", "empty"},
		{"missing", filepath.Join(dir, "nope"), "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := RedisOptions(settings.Redis{Addr: "127.0.0.1:1", Username: "u", PasswordFile: tc.file}, settings.TLS{}, nil, nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || o.Password != tc.want || o.Username != "u" {
				t.Fatalf("got %q/%q, %v; want %q", o.Username, o.Password, err, tc.want)
			}
			// Every new connection asks again, and gets the file's
			// content of that moment.
			if u, p, err := o.Credentials(); err != nil || u != "u" || p != tc.want {
				t.Fatalf("Credentials: %q/%q, %v; want %q", u, p, err, tc.want)
			}
			if err := os.WriteFile(tc.file, []byte("rotated\r\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, p, err := o.Credentials(); err != nil || p != "rotated" {
				t.Fatalf("Credentials after a rewrite: %q, %v; want rotated", p, err)
			}
		})
	}
}

// The setting's default is the memory store's.
func TestMemoryMaxKeysDefault(t *testing.T) {
	if settings.DefaultMemoryMaxKeys != memory.DefaultMaxKeys {
		t.Errorf("settings.DefaultMemoryMaxKeys %d, memory.DefaultMaxKeys %d", settings.DefaultMemoryMaxKeys, memory.DefaultMaxKeys)
	}
}

// A password file readable by others, and a password without TLS, are
// warned about, never showing the password.
func TestRedisPasswordWarnings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("s3cret-pw\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		mode     os.FileMode
		tls      settings.TLS
		wantPerm bool
		wantTCP  bool
	}{
		{"group-readable, plain TCP", 0o640, settings.TLS{}, true, true},
		{"owner only, TLS", 0o600, settings.TLS{Enabled: true}, false, false},
		{"world-readable, TLS", 0o604, settings.TLS{Enabled: true}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Chmod(file, tc.mode); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			if _, err := RedisOptions(settings.Redis{Addr: "127.0.0.1:1", PasswordFile: file}, tc.tls, nil, slog.New(slog.NewJSONHandler(&logs, nil))); err != nil {
				t.Fatal(err)
			}
			out := logs.String()
			if got := strings.Contains(out, "readable by others"); got != tc.wantPerm {
				t.Errorf("permission warning %v, want %v:\n%s", got, tc.wantPerm, out)
			}
			if got := strings.Contains(out, "plain TCP"); got != tc.wantTCP {
				t.Errorf("plain TCP warning %v, want %v:\n%s", got, tc.wantTCP, out)
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("the password was logged:\n%s", out)
			}
		})
	}
}
