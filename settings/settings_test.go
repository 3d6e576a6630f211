package settings_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/settings"
)

// Every setting is one field, bound to a flag, a variable and (but config)
// a file key derived from its name; the table follows the struct. Adding a
// setting adds a row here.
func TestFields(t *testing.T) {
	s := settings.Default()
	want := []string{
		"config", "listen", "api-token-file", "admin-token-file", "inline-limits", "http-h2c", "http-max-batch-checks", "grpc-listen", "envoy-config",
		"grpc-max-recv-bytes", "grpc-max-concurrent-streams", "grpc-keepalive-min-time", "grpc-reflection", "grpc-max-descriptors",
		"redis", "redis-cluster", "redis-username", "redis-password-file", "redis-address-map",
		"redis-dial-timeout", "redis-conn-timeout", "redis-attempt-timeout", "redis-retries",
		"redis-conns-per-node", "redis-wait-replicas",
		"redis-tls", "redis-tls-ca-file", "redis-tls-cert-file", "redis-tls-key-file",
		"redis-tls-server-name", "redis-tls-insecure-skip-verify",
		"tls-cert-file", "tls-key-file", "tls-client-ca-file", "grpc-tls-cert-file", "grpc-tls-key-file", "grpc-tls-client-ca-file",
		"check-timeout", "reload-interval", "shutdown-timeout", "local-cache-size", "local-cache-max-age", "memory-max-keys", "log-level",
	}
	var got []string
	for _, f := range settings.Fields(&s) {
		got = append(got, f.Flag)
		if f.Env != "TOLLGATE_"+strings.ToUpper(strings.ReplaceAll(f.Flag, "-", "_")) {
			t.Errorf("--%s: variable %s", f.Flag, f.Env)
		}
		if wantKey := strings.ReplaceAll(f.Flag, "-", "_"); f.Key != wantKey && !(f.Flag == "config" && f.Key == "") {
			t.Errorf("--%s: file key %q", f.Flag, f.Key)
		}
		if f.Value.String() == "" && f.Value.Type() == "" {
			t.Errorf("--%s: no value", f.Flag)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("settings\n%q\nwant\n%q", got, want)
	}
}

// A value set through the table reaches the struct field.
func TestFieldsBind(t *testing.T) {
	s := settings.Default()
	set := map[string]string{
		"listen": "0.0.0.0:1", "redis-cluster": "a:1,b:2", "redis-address-map": "a:1=b:2",
		"redis-retries": "-1", "redis-tls-insecure-skip-verify": "true", "inline-limits": "false", "grpc-reflection": "true", "grpc-max-descriptors": "8", "local-cache-max-age": "1m", "log-level": "warn",
	}
	for _, f := range settings.Fields(&s) {
		if v, ok := set[f.Flag]; ok {
			if err := f.Value.Set(v); err != nil {
				t.Fatalf("--%s %s: %v", f.Flag, v, err)
			}
		}
	}
	if s.HTTP.Listen != "0.0.0.0:1" || !reflect.DeepEqual(s.Redis.Cluster, []string{"a:1", "b:2"}) ||
		s.Redis.AddressMap["a:1"] != "b:2" || s.Redis.Retries != -1 || !s.TLS.InsecureSkipVerify || !s.TLS.On() ||
		s.Cache.MaxAge != time.Minute || s.Log.Level != "warn" || s.HTTP.InlineLimits ||
		!s.GRPC.Reflection || s.GRPC.MaxDescriptors != 8 {
		t.Errorf("bound values: %+v", s)
	}
}

// Command line > environment > file > default.
func TestPrecedence(t *testing.T) {
	s := settings.Default()
	f := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.AddFlags(f)
	if err := f.Parse([]string{"--check-timeout", "150ms"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TOLLGATE_CHECK_TIMEOUT": "200ms", "TOLLGATE_SHUTDOWN_TIMEOUT": "3s"}
	if err := settings.ApplyEnv(f, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	file := settings.File{{Key: "check_timeout", Value: "300ms"}, {Key: "shutdown_timeout", Value: "4s"}, {Key: "reload_interval", Value: "5m"}}
	if err := settings.ApplyFile(f, file); err != nil {
		t.Fatal(err)
	}
	if s.Check.Timeout != 150*time.Millisecond || s.Check.ShutdownTimeout != 3*time.Second || s.Check.ReloadInterval != 5*time.Minute || s.Cache.Size != settings.DefaultCacheSize {
		t.Errorf("check %s (flag), shutdown %s (env), reload %s (file), cache %d (default)", s.Check.Timeout, s.Check.ShutdownTimeout, s.Check.ReloadInterval, s.Cache.Size)
	}
	if err := settings.ApplyEnv(f, func(string) (string, bool) { return "soon", true }); err == nil || !strings.Contains(err.Error(), `invalid TOLLGATE_`) {
		t.Errorf("a bad variable: %v", err)
	}
}

func TestValidate(t *testing.T) {
	if err := settings.Default().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		edit func(*settings.Settings)
		flag string
		want string
	}{
		{func(s *settings.Settings) { s.HTTP.Listen = "" }, "listen", "--listen is empty"},
		{func(s *settings.Settings) { s.Check.Timeout = 0 }, "check-timeout", "--check-timeout 0s: must be positive"},
		{func(s *settings.Settings) { s.GRPC.Listen = "127.0.0.1:0" }, "grpc-listen", "--grpc-listen needs --envoy-config"},
		{func(s *settings.Settings) { s.Redis.Addr, s.Redis.Cluster = "a:1", []string{"b:2"} }, "redis-cluster", "--redis and --redis-cluster are mutually exclusive"},
		{func(s *settings.Settings) { s.Redis.Cluster = []string{"a:1", "b"} }, "redis-cluster", `--redis-cluster node "b": want HOST:PORT`},
		{func(s *settings.Settings) { s.TLS.ServerName = "x" }, "redis-tls", "need --redis or --redis-cluster"},
		{func(s *settings.Settings) { s.GRPC.MaxDescriptors = 0 }, "grpc-max-descriptors", "--grpc-max-descriptors 0: must be positive"},
		{func(s *settings.Settings) { s.GRPC.KeepaliveMinTime = 0 }, "grpc-keepalive-min-time", "must be positive"},
		{func(s *settings.Settings) { s.Memory.MaxKeys = 0 }, "memory-max-keys", "--memory-max-keys 0: must be positive"},
		{func(s *settings.Settings) { s.HTTP.MaxBatchChecks = 0 }, "http-max-batch-checks", "--http-max-batch-checks 0: must be positive"},
		{func(s *settings.Settings) { s.Listen.CertFile = "c.pem" }, "tls-cert-file", "--tls-cert-file needs --tls-key-file"},
		{func(s *settings.Settings) { s.Listen.ClientCAFile = "ca.pem" }, "tls-client-ca-file", "--tls-client-ca-file needs --tls-cert-file"},
		{func(s *settings.Settings) { s.Listen.GRPCKeyFile = "k.pem" }, "grpc-tls-key-file", "--grpc-tls-key-file needs --grpc-tls-cert-file"},
		{func(s *settings.Settings) { s.Cache.Size = -1 }, "local-cache-size", "--local-cache-size -1: must not be negative"},
		{func(s *settings.Settings) { s.Log.Level = "loud" }, "log-level", `unknown --log-level "loud"`},
	} {
		s := settings.Default()
		tc.edit(&s)
		err := s.Validate()
		var e *settings.Error
		if !errors.As(err, &e) || e.Flag != tc.flag || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want an *Error of %s with %q", err, tc.flag, tc.want)
		}
	}
}

// A server section: keys, values, the file's own rules, resolved paths.
func TestCheckFile(t *testing.T) {
	f, err := settings.CheckFile(settings.File{{Key: "api_token_file", Value: "tokens"}, {Key: "envoy_config", Value: "/etc/envoy"}, {Key: "grpc_listen", Value: "127.0.0.1:1"}}, "/srv")
	if err != nil || f[0].Value != "/srv/tokens" || f[1].Value != "/etc/envoy" {
		t.Fatalf("%+v, %v; want relative paths resolved", f, err)
	}
	for _, tc := range []struct {
		file settings.File
		want string
	}{
		{settings.File{{Key: "grpc", Value: "x"}}, `unknown setting "grpc"`},
		{settings.File{{Key: "config", Value: "x"}}, `unknown setting "config"`},
		{settings.File{{Key: "check_timeout", Value: "100"}}, `check_timeout "100" is not a Go duration`},
		{settings.File{{Key: "local_cache_size", Value: "0"}}, "local_cache_size 0: must be positive (turn the cache off with --local-cache-size 0)"},
		{settings.File{{Key: "redis_dial_timeout", Value: "0s"}}, "redis_dial_timeout 0s: must be positive"},
		{settings.File{{Key: "redis", Value: "a:1"}, {Key: "redis_cluster", Value: "b:2"}}, "redis and redis_cluster are mutually exclusive"},
	} {
		if _, err := settings.CheckFile(tc.file, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.file, err, tc.want)
		}
	}
	// What only another source completes is left to it.
	if _, err := settings.CheckFile(settings.File{{Key: "envoy_config", Value: "e"}}, ""); err != nil {
		t.Errorf("envoy_config alone: %v", err)
	}
}
