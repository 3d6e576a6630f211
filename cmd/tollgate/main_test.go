package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/internal/testutil"
	"github.com/tollgate/tollgate/settings"
)

// run runs `tollgate args…` with env as the environment and an ended
// context, so that serve shuts down as soon as it listens, and returns its
// stderr and error.
func run(t *testing.T, env map[string]string, args ...string) (*testutil.SyncBuffer, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var errOut testutil.SyncBuffer
	cmd := newRootCmd(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(&errOut)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	select {
	case err := <-done:
		return &errOut, err
	case <-time.After(testutil.Wait):
		t.Fatal("command did not return")
	}
	return nil, nil
}

// TestServeSettings checks where settings come from: command line >
// environment > config file > default.
func TestServeSettings(t *testing.T) {
	dir := t.TempDir()
	envoy := testutil.WriteTemp(t, dir, "envoy.yaml", "domain: d\n")
	file := testutil.WriteTemp(t, dir, "tollgate.yaml", `
server:
  listen: 127.0.0.1:0
  check_timeout: 300ms
  shutdown_timeout: 3s
  grpc_listen: 127.0.0.1:0
  envoy_config: envoy.yaml
policies:
  - name: p
    units: 1
    window: 1m
`)
	_ = envoy
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantCheck time.Duration
		wantErr   string
		wantGRPC  bool
	}{
		{"defaults", []string{"serve", "--listen", "127.0.0.1:0"}, nil, settings.DefaultCheckTimeout, "", false},
		{"file", []string{"serve", "--config", file}, nil, 300 * time.Millisecond, "", true},
		{"config from the environment", []string{"serve"}, map[string]string{"TOLLGATE_CONFIG": file}, 300 * time.Millisecond, "", true},
		{"environment over file", []string{"serve", "--config", file},
			map[string]string{"TOLLGATE_CHECK_TIMEOUT": "200ms"}, 200 * time.Millisecond, "", true},
		{"flag over environment", []string{"serve", "--config", file, "--check-timeout", "150ms"},
			map[string]string{"TOLLGATE_CHECK_TIMEOUT": "200ms"}, 150 * time.Millisecond, "", true},
		{"environment turns gRPC off", []string{"serve", "--config", file},
			map[string]string{"TOLLGATE_GRPC_LISTEN": "", "TOLLGATE_ENVOY_CONFIG": ""}, 300 * time.Millisecond, "", false},
		{"bad environment value", []string{"serve", "--listen", "127.0.0.1:0"},
			map[string]string{"TOLLGATE_CHECK_TIMEOUT": "soon"}, 0, `invalid TOLLGATE_CHECK_TIMEOUT "soon"`, false},
		{"list from the environment", []string{"serve", "--redis", "127.0.0.1:6379"},
			map[string]string{"TOLLGATE_REDIS_CLUSTER": "127.0.0.1:7000,127.0.0.1:7001"}, 0, "mutually exclusive", false},
		{"log level from the environment", []string{"serve", "--listen", "127.0.0.1:0"},
			map[string]string{"TOLLGATE_LOG_LEVEL": "loud"}, 0, "--log-level", false},
		{"bad file", []string{"serve", "--config", testutil.WriteTemp(t, dir, "bad.yaml", "server:\n  listen: nope\n")},
			nil, 0, `server: listen "nope": want HOST:PORT`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errOut, err := run(t, tt.env, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err %v; stderr %s", err, errOut.String())
			}
			var rec struct {
				CheckTimeout string `json:"check_timeout"`
				GRPCAddr     string `json:"grpc_addr"`
			}
			line := testutil.WaitLog(t, errOut, `"msg":"listening"`)
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
			if rec.CheckTimeout != tt.wantCheck.String() || (rec.GRPCAddr != "") != tt.wantGRPC {
				t.Errorf("check_timeout %s, gRPC %q; want %s, gRPC %t", rec.CheckTimeout, rec.GRPCAddr, tt.wantCheck, tt.wantGRPC)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	s := settings.Default()
	want := map[string]string{
		"listen":         "TOLLGATE_LISTEN",
		"grpc-listen":    "TOLLGATE_GRPC_LISTEN",
		"api-token-file": "TOLLGATE_API_TOKEN_FILE",
	}
	for _, f := range settings.Fields(&s) {
		if w, ok := want[f.Flag]; ok && f.Env != w {
			t.Errorf("the variable of --%s is %q, want %q", f.Flag, f.Env, w)
		}
		delete(want, f.Flag)
	}
	if len(want) > 0 {
		t.Errorf("no settings %v", want)
	}
}

// Every serve flag but --config has a key in the config file's server
// section, and the file's value reaches the flag.
func TestEveryFlagInFile(t *testing.T) {
	flags := newServeCmd(nil).Flags()
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" {
			return
		}
		value := "x"
		switch {
		case f.Value.Type() == "duration":
			value = "1s"
		case f.Value.Type() == "int":
			value = "1"
		case f.Value.Type() == "bool":
			value = "true"
		case f.Value.Type() == "stringToString":
			value = "{127.0.0.1:1: 127.0.0.1:2}"
		case f.Value.Type() == "stringSlice":
			value = "[127.0.0.1:1]"
		case strings.Contains(f.Name, "listen") || f.Name == "redis":
			value = "127.0.0.1:1"
		case f.Name == "log-level":
			value = "debug"
		}
		key := strings.ReplaceAll(f.Name, "-", "_")
		c, err := config.Parse([]byte("server:\n  " + key + ": " + value + "\n"))
		if err != nil {
			t.Errorf("--%s: server.%s: %v", f.Name, key, err)
			return
		}
		fresh := newServeCmd(nil).Flags()
		if err := settings.ApplyFile(fresh, c.Server()); err != nil {
			t.Errorf("--%s: %v", f.Name, err)
		}
		if !fresh.Changed(f.Name) {
			t.Errorf("--%s: server.%s did not set it", f.Name, key)
		}
	})
}

func TestServeCommand(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for a clean run
		wantLog string
	}{
		{"serves memory until the context ends", []string{"serve", "--listen", "127.0.0.1:0", "--log-level", "warn"}, "", ""},
		{"logs the listen address at info", []string{"serve", "--listen", "127.0.0.1:0", "--shutdown-timeout", "1s"}, "", `"msg":"listening","addr":"127.0.0.1:`},
		{"bad log level", []string{"serve", "--log-level", "loud"}, "--log-level", ""},
		{"both redis flags", []string{"serve", "--redis", "127.0.0.1:6379", "--redis-cluster", "127.0.0.1:7000,127.0.0.1:7001"}, "mutually exclusive", ""},
		{"redis unreachable", []string{"serve", "--redis", "127.0.0.1:1"}, "connection refused", ""},
		{"bad shutdown timeout", []string{"serve", "--shutdown-timeout", "soon"}, "shutdown-timeout", ""},
		{"bad check timeout", []string{"serve", "--check-timeout", "-1s"}, "--check-timeout -1s: must be positive", ""},
		{"grpc without envoy config", []string{"serve", "--grpc-listen", "127.0.0.1:0"}, "needs --envoy-config", ""},
		{"missing config file", []string{"serve", "--config", "/nonexistent/tollgate.yaml"}, "--config: open /nonexistent/tollgate.yaml", ""},
		{"arguments", []string{"serve", "now"}, "unknown command", ""},
		{"unknown flag", []string{"serve", "--port", "8080"}, "unknown flag", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errOut, err := run(t, nil, tt.args...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err %v, want nil; stderr %s", err, errOut.String())
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(errOut.String(), tt.wantLog) {
				t.Errorf("stderr %s, want %s", errOut.String(), tt.wantLog)
			}
			if tt.wantLog == "" && tt.wantErr == "" && errOut.String() != "" {
				t.Errorf("stderr at --log-level warn: %s", errOut.String())
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in   string
		want slog.Level
		err  bool
	}{
		{"debug", slog.LevelDebug, false},
		{"info", slog.LevelInfo, false},
		{"warn", slog.LevelWarn, false},
		{"error", slog.LevelError, false},
		{"WARN", slog.LevelWarn, false},
		{"warning", 0, true},
		{"info+2", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := settings.Log{Level: tt.in}.SlogLevel()
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("SlogLevel of %q = %v, %v; want %v, error %t", tt.in, got, err, tt.want, tt.err)
		}
	}
}
