package config

import (
	"errors"
	"fmt"
	"github.com/spf13/pflag"
	"github.com/tollgate/tollgate/settings"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/policy"
)

// Each file or directory in testdata/bad fails with one error: at line (0:
// no line in the message) and containing want. limit: the error wraps
// tollgate.ErrInvalidLimit.
var badConfigs = []struct {
	name  string
	line  int
	want  string
	limit bool
}{
	{"policy_unknown_field.yaml", 4, `unknown field "windw"`, false},
	{"policy_limits_and_units.yaml", 6, `policy "a": tollgate: invalid limit: give either limits or units, window and algorithm`, true},
	{"policy_limits_empty.yaml", 3, `policy "a": tollgate: invalid limit: bad set of limits: 0 limits (want 1 to 8)`, true},
	{"policy_limits_duplicate.yaml", 4, `limit #2 repeats the sliding_log window 1h0m0s`, true},
	{"policy_limits_bad_units.yaml", 4, `policy "a": limit #2: units: tollgate: invalid limit: units 0 out of range`, true},
	{"policy_no_name.yaml", 2, `policy #1: name is required`, false},
	{"policy_duplicate_name.yaml", 5, `policy "a": duplicate name (first at line 2)`, false},
	{"policy_zero_units.yaml", 3, `policy "a": tollgate: invalid limit: units 0 out of range`, true},
	{"policy_missing_units.yaml", 2, `policy "a": tollgate: invalid limit: units 0 out of range`, true},
	{"policy_units_too_large.yaml", 3, `units 1000000000000001 out of range`, true},
	{"policy_units_string.yaml", 3, "cannot unmarshal !!str `100` into int64", false},
	{"policy_missing_window.yaml", 2, `policy "a": tollgate: invalid limit: window is required`, true},
	{"policy_bad_window.yaml", 4, `window "1 hour" is not a Go duration`, true},
	{"policy_window_too_long.yaml", 4, `window 8760h0m0s out of range`, true},
	{"policy_window_too_short.yaml", 4, `window 10µs out of range`, true},
	{"policy_bad_algorithm.yaml", 5, `policy "a": tollgate: invalid limit: unknown algorithm "token_bucket"`, true},
	{"policy_bad_failure_mode.yaml", 5, `policy "a": unknown failure_mode "fail_sometimes" (want fail_closed, fail_open or fail_local)`, false},
	{"policy_shadow_not_bool.yaml", 5, "cannot unmarshal !!str `maybe` into bool", false},
	{"policy_duplicate_key.yaml", 4, `mapping key "units" already defined at line 3`, false},
	{"policy_two_documents.yaml", 2, `more than one YAML document`, false},
	{"policy_empty.yaml", 0, `empty file: no YAML document`, false},
	{"policy_syntax.yaml", 1, `did not find expected '-' indicator`, false},
	{"policy_not_a_list.yaml", 2, `cannot unmarshal !!map into a list`, false},
	{"policy_name_with_space.yaml", 2, `policy "api hourly": name must be 1 to 128 printable ASCII characters without spaces`, false},
	{"policy_name_not_ascii.yaml", 5, `policy "café": name must be 1 to 128 printable ASCII`, false},
	{"policy_name_too_long.yaml", 2, `name must be 1 to 128 printable ASCII`, false},
	{"policy_server_unknown_field.yaml", 3, `unknown field "grpc"`, false},
	{"policy_server_bad_duration.yaml", 3, `server: check_timeout "100" is not a Go duration`, false},
	{"policy_server_zero_duration.yaml", 3, `server: shutdown_timeout 0s: must be positive`, false},
	{"policy_server_bad_listen.yaml", 2, `server: listen "localhost": want HOST:PORT`, false},
	{"policy_server_both_redis.yaml", 4, `server: redis and redis_cluster are mutually exclusive`, false},
	{"policy_server_bad_cluster_node.yaml", 4, `server: redis_cluster node "127.0.0.1": want HOST:PORT`, false},
	{"policy_server_bad_log_level.yaml", 2, `server: unknown log_level "loud"`, false},
	{"policy_server_zero_cache_size.yaml", 2, `server: local_cache_size 0: must be positive (turn the cache off with --local-cache-size 0)`, false},
	{"policy_top_level_list.yaml", 1, `cannot unmarshal !!seq into a mapping`, false},

	{"envoy_bad_yaml.yaml", 0, `found unexpected end of stream`, false},
	{"envoy_empty_domain.yaml", 1, `domain is required`, false},
	{"envoy_empty_key.yaml", 3, `domain "test-domain": descriptor #1 under "": key is required`, false},
	{"envoy_duplicate_key.yaml", 7, `descriptor "key1_value1": duplicate descriptor (first at line 3)`, false},
	{"envoy_duplicate_default.yaml", 6, `descriptor "key1.sub": duplicate descriptor (first at line 5)`, false},
	{"envoy_bad_unit.yaml", 6, `descriptor "key1_value1": rate_limit: tollgate: invalid limit: unknown unit "foo" (want second, minute, hour, day, week or month)`, true},
	{"envoy_nested_bad_unit.yaml", 8, `descriptor "key1_value1.subkey1": rate_limit: tollgate: invalid limit: unknown unit "fortnight"`, true},
	{"envoy_year.yaml", 5, `unit year (365 days) is longer than the longest window, 30 days`, true},
	{"envoy_missing_unit.yaml", 5, `rate_limit: tollgate: invalid limit: unit is required (or a window)`, true},
	{"envoy_missing_requests.yaml", 5, `requests_per_unit is required`, true},
	{"envoy_negative_requests.yaml", 6, `requests_per_unit -1 out of range [0, 1000000000000000]`, true},
	{"envoy_misspelled_key.yaml", 5, `unknown field "ratelimit"`, false},
	{"envoy_misspelled_key2.yaml", 7, `unknown field "requestsperunit"`, false},
	{"envoy_non_map_list.yaml", 3, "cannot unmarshal !!str `a` into a mapping", false},
	{"envoy_non_string_key.yaml", 1, `unknown field "0.25"`, false},
	{"envoy_replaces_empty.yaml", 10, `descriptor "key1_value1.subkey1": rate_limit: replaces entry #1 has no name`, false},
	{"envoy_replaces_self.yaml", 7, `rate_limit: replaces its own name "self"`, false},
	{"envoy_unlimited_with_unit.yaml", 6, `rate_limit: unlimited takes no unit`, false},
	{"envoy_unlimited_with_window.yaml", 6, `rate_limit: unlimited takes no window`, false},
	{"envoy_share_threshold_no_glob.yaml", 5, `share_threshold needs a value with '*', not "files/a"`, false},
	{"envoy_quota_mode.yaml", 4, `descriptor "key1": quota_mode is not supported`, false},
	{"envoy_metadata.yaml", 8, `descriptor "key1": metadata is not supported`, false},
	{"envoy_bad_window.yaml", 5, `window "5 minutes" is not a Go duration`, true},
	{"envoy_window_too_short.yaml", 5, `window 100µs out of range [1ms, 720h0m0s]`, true},
	{"envoy_window_too_long.yaml", 5, `window 721h0m0s out of range`, true},
	{"envoy_bad_algorithm.yaml", 7, `unknown algorithm "fixed_window"`, true},
	{"envoy_bad_failure_mode.yaml", 7, `rate_limit: unknown failure_mode "fail_sometimes" (want fail_closed, fail_open or fail_local)`, false},
	{"envoy_unlimited_with_failure_mode.yaml", 6, `rate_limit: unlimited takes no failure_mode`, false},
	{"envoy_two_documents.yaml", 2, `more than one YAML document`, false},
	{"envoy_duplicate_domain", 2, `duplicate domain "test-domain" (first in testdata/bad/envoy_duplicate_domain/a.yaml:1)`, false},
	{"envoy_empty_dir", 0, `no *.yaml or *.yml files in directory`, false},
}

func TestBadConfigs(t *testing.T) {
	listed := make(map[string]bool)
	for _, tc := range badConfigs {
		listed[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tc.name)
			var err error
			if strings.HasPrefix(tc.name, "policy_") {
				_, err = Load(path)
			} else {
				_, err = LoadEnvoy(path)
			}
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q\ndoes not contain %q", msg, tc.want)
			}
			if tc.line > 0 {
				file := path
				if fi, statErr := os.Stat(path); statErr == nil && fi.IsDir() {
					file = "" // any file in the directory
				}
				re := fmt.Sprintf("%s:%d: ", file, tc.line)
				if !strings.Contains(msg, re) || (file != "" && !strings.HasPrefix(msg, re)) {
					t.Errorf("error %q\ndoes not start with %q", msg, re)
				}
			} else if !strings.HasPrefix(msg, path) {
				t.Errorf("error %q\ndoes not start with the path %q", msg, path)
			}
			if got := errors.Is(err, tollgate.ErrInvalidLimit); got != tc.limit {
				t.Errorf("errors.Is(err, ErrInvalidLimit) = %t, want %t", got, tc.limit)
			}
			if strings.Contains(msg, "config.") {
				t.Errorf("error %q names a Go type", msg)
			}
		})
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !listed[e.Name()] {
			t.Errorf("testdata/bad/%s is not in badConfigs", e.Name())
		}
	}
}

func TestGoodConfigsLoad(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("testdata", "good"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		path := filepath.Join("testdata", "good", e.Name())
		var err error
		if strings.HasPrefix(e.Name(), "policy_") {
			_, err = Load(path)
		} else {
			_, err = LoadEnvoy(path)
		}
		if err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

func TestLoadPolicies(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "good", "policy_basic.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Policy{
		{Name: "api-hourly", Limits: []tollgate.Limit{{Units: 100, Window: time.Hour}}},
		{Name: "login-burst", Limits: []tollgate.Limit{{Units: 5, Window: 250 * time.Millisecond, Algorithm: tollgate.GCRA}}, FailureMode: policy.FailOpen},
		{Name: "export-daily", Limits: []tollgate.Limit{{Units: 1_000_000, Window: 24 * time.Hour, Algorithm: tollgate.SlidingWindow}}, Shadow: true},
		{Name: "monthly-quota", Limits: []tollgate.Limit{{Units: tollgate.MaxUnits, Window: tollgate.MaxWindow}}},
		{Name: "api-tiered", Limits: []tollgate.Limit{
			{Units: 10, Window: time.Second, Algorithm: tollgate.GCRA},
			{Units: 1000, Window: time.Hour},
			{Units: 20000, Window: 24 * time.Hour, Algorithm: tollgate.SlidingWindow},
		}, FailureMode: policy.FailLocal},
	}
	got := c.Policies()
	if len(got) != len(want) {
		t.Fatalf("Policies() = %v, want %v", got, want)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("policy %d = %+v, want %+v", i, got[i], want[i])
		}
		p, ok := c.Policy(want[i].Name)
		if !ok || !reflect.DeepEqual(p, want[i]) {
			t.Errorf("Policy(%q) = %+v, %t", want[i].Name, p, ok)
		}
	}
	if _, ok := c.Policy("nope"); ok {
		t.Error(`Policy("nope") found`)
	}
	got[0].Name = "changed"
	if c.Policies()[0].Name != "api-hourly" {
		t.Error("Policies() does not return a copy")
	}
}

// applied returns the settings a server section makes of the defaults.
func applied(t *testing.T, f settings.File) settings.Settings {
	t.Helper()
	s := settings.Default()
	fs := pflag.NewFlagSet("", pflag.ContinueOnError)
	s.AddFlags(fs)
	if err := settings.ApplyFile(fs, f); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServerSection(t *testing.T) {
	path := filepath.Join("testdata", "good", "policy_server.yaml")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "good")
	want := settings.Default()
	want.HTTP.Listen, want.HTTP.APITokenFile, want.HTTP.AdminTokenFile = "127.0.0.1:8080", "/etc/tollgate/api-tokens", filepath.Join(dir, "admin-tokens")
	want.GRPC.Listen, want.GRPC.EnvoyConfig = "127.0.0.1:8081", filepath.Join(dir, "envoy")
	want.Redis.Cluster = []string{"127.0.0.11:7000", "127.0.0.12:7000"}
	want.Check = settings.Check{Timeout: 100 * time.Millisecond, ShutdownTimeout: 10 * time.Second, ReloadInterval: 2 * time.Second}
	want.Log.Level = "WARN"
	want.Cache = settings.Cache{Size: 5000, MaxAge: 30 * time.Second}
	if got := applied(t, c.Server()); !reflect.DeepEqual(got, want) {
		t.Errorf("Server() =\n%+v\nwant\n%+v", got, want)
	}
	if _, ok := c.Policy("api-hourly"); !ok {
		t.Error("policy api-hourly missing")
	}
	c.Server()[0].Value = "changed"
	if c.Server()[0].Value != "127.0.0.1:8080" {
		t.Error("Server() does not copy")
	}

	// Parse keeps relative paths; a file without a server section sets
	// nothing.
	c, err = Parse([]byte("server:\n  envoy_config: envoy\npolicies: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Server(); len(got) != 1 || got[0].Key != "envoy_config" || got[0].Value != "envoy" {
		t.Errorf("Server() = %+v", got)
	}
	for _, src := range []string{"policies: []\n", "server: {}\n", "server:\n"} {
		c, err = Parse([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got := c.Server(); len(got) != 0 {
			t.Errorf("%q: Server() = %+v, want nothing set", src, got)
		}
	}
	var nilConfig *Config
	if got := nilConfig.Server(); len(got) != 0 {
		t.Errorf("nil Config: Server() = %+v", got)
	}
}

func TestParseErrorsHaveLinesWithoutFile(t *testing.T) {
	_, err := Parse([]byte("policies:\n  - name: a\n    units: 1\n    window: forever\n"))
	if err == nil || !strings.HasPrefix(err.Error(), `line 4: policy "a": `) {
		t.Fatalf("Parse error = %v", err)
	}
	_, err = ParseEnvoy([]byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: eon, requests_per_unit: 1}\n"))
	if err == nil || !strings.HasPrefix(err.Error(), `line 4: domain "d": descriptor "k": rate_limit: `) {
		t.Fatalf("ParseEnvoy error = %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	for _, load := range []func(string) error{
		func(p string) error { _, err := Load(p); return err },
		func(p string) error { _, err := LoadEnvoy(p); return err },
	} {
		err := load(filepath.Join(t.TempDir(), "missing.yaml"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error = %v, want fs.ErrNotExist", err)
		}
	}
}

func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	data := []byte("policies: []\n" + strings.Repeat("#", MaxFileSize))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "file larger than") {
		t.Fatalf("Load error = %v", err)
	}
}

func TestNilConfig(t *testing.T) {
	var c *Config
	if _, ok := c.Policy("a"); ok || c.Policies() != nil {
		t.Error("nil Config has policies")
	}
	var e *EnvoyConfig
	if _, ok := e.Match("d", []policy.Entry{{Key: "k", Value: "v"}}); ok || e.Domains() != nil {
		t.Error("nil EnvoyConfig matches")
	}
}
