package service

import (
	"github.com/tollgate/tollgate/settings"
	"github.com/tollgate/tollgate/store/memory"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
