package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/policy"
)

func loadEnvoy(t *testing.T, name string) *EnvoyConfig {
	t.Helper()
	c, err := LoadEnvoy(filepath.Join("testdata", "good", name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// e builds entries from "key=value" strings.
func e(kvs ...string) []policy.Entry {
	es := make([]policy.Entry, len(kvs))
	for i, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		es[i] = policy.Entry{Key: k, Value: v}
	}
	return es
}

type matchCase struct {
	entries []policy.Entry
	ok      bool
	units   int64 // when ok and limited
	window  time.Duration
	key     string // when ok and limited; "" skips the check
}

func checkMatches(t *testing.T, c *EnvoyConfig, domain string, cases []matchCase) {
	t.Helper()
	for _, tc := range cases {
		r, ok := c.Match(domain, tc.entries)
		if ok != tc.ok {
			t.Errorf("Match(%q, %v) ok = %t, want %t (rule %+v)", domain, tc.entries, ok, tc.ok, r)
			continue
		}
		if !ok || r.Unlimited {
			continue
		}
		if r.Limit.Units != tc.units || r.Limit.Window != tc.window {
			t.Errorf("Match(%q, %v) = %s, want %d per %s", domain, tc.entries, r.Limit, tc.units, tc.window)
		}
		if tc.key != "" && r.Key != tc.key {
			t.Errorf("Match(%q, %v).Key = %q, want %q", domain, tc.entries, r.Key, tc.key)
		}
	}
}

// The cases of envoyproxy/ratelimit's TestBasicConfig.
func TestMatchBasic(t *testing.T) {
	c := loadEnvoy(t, "envoy_basic.yaml")
	if got := c.Domains(); !slices.Equal(got, []string{"test-domain"}) {
		t.Errorf("Domains() = %v", got)
	}
	checkMatches(t, c, "foo_domain", []matchCase{{entries: e("key1=value1")}})
	checkMatches(t, c, "test-domain", []matchCase{
		{entries: nil},
		{entries: e("key1=something")},
		{entries: e("key1=value1")},                     // no rate_limit at this level
		{entries: e("key2=value2", "subkey=subvalue")},  // more entries than the path
		{entries: e("key5=value5", "subkey5=subvalue")}, // second level mismatch: no fallback to the first
		{entries: e("key1=value1", "subkey1=something"), ok: true, units: 5, window: time.Second,
			key: "test-domain|key1=value1|subkey1=something"},
		{entries: e("key1=value1", "subkey1=subvalue1"), ok: true, units: 10, window: time.Second},
		{entries: e("key2=something"), ok: true, units: 20, window: time.Minute, key: "test-domain|key2=something"},
		{entries: e("key2=value2"), ok: true, units: 30, window: time.Minute},
		{entries: e("key2=value3")}, // exempted: a specific value without rate_limit
		{entries: e("key2="), ok: true, units: 20, window: time.Minute, key: "test-domain|key2="},
		{entries: e("key3=foo"), ok: true, units: 1, window: time.Hour},
		{entries: e("key4=foo"), ok: true, units: 1, window: 24 * time.Hour},
		{entries: e("key5=value5"), ok: true, units: 15, window: 24 * time.Hour},
		{entries: e("key5=value5", "subkey5=subvalue5"), ok: true, units: 25, window: 24 * time.Hour},
		{entries: e("key6=foo"), ok: true},
		{entries: e("key7=any"), ok: true, units: 70, window: time.Minute},
		{entries: e("KEY2=value2")}, // keys and values are case-sensitive
	})

	r, _ := c.Match("test-domain", e("key4=foo"))
	if r.Name != "key4_rate_limit" || r.Shadow || r.Unlimited || r.Limit.Algorithm != tollgate.SlidingLog {
		t.Errorf("key4 rule = %+v", r)
	}
	r, _ = c.Match("test-domain", e("key6=foo"))
	if !r.Unlimited || r.Key != "" || !r.Limit.IsZero() {
		t.Errorf("key6 rule = %+v, want unlimited without key or limit", r)
	}
}

func TestMatchWildcard(t *testing.T) {
	c := loadEnvoy(t, "envoy_wildcard.yaml")
	checkMatches(t, c, "wildcard", []matchCase{
		{entries: e("wild=foobar"), ok: true, units: 22, window: time.Minute},                          // exact wins
		{entries: e("wild=foo1"), ok: true, units: 20, window: time.Minute, key: "wildcard|wild=foo1"}, // first glob in file order
		{entries: e("wild=foo"), ok: true, units: 20, window: time.Minute},
		{entries: e("wild=fo"), ok: true, units: 21, window: time.Minute},
		{entries: e("wild=f"), ok: true, units: 23, window: time.Minute}, // no glob: the key-only descriptor
		{entries: e("wild=foo*"), ok: true, units: 20, window: time.Minute},
		{entries: e("midWild=barb"), ok: true, units: 24, window: time.Minute},
		{entries: e("midWild=bar123b"), ok: true, units: 24, window: time.Minute},
		{entries: e("midWild=bar")},
		{entries: e("midWild=barbx")},
		{entries: e("multiWild=foobarbaz"), ok: true, units: 25, window: time.Minute},
		{entries: e("multiWild=foo-bar-x-baz"), ok: true, units: 25, window: time.Minute},
		{entries: e("multiWild=foobaz")},
		{entries: e("multiWild=foobazbar")},
		// share_threshold: every matching value shares the glob's counter.
		{entries: e("files=files/a.pdf"), ok: true, units: 100, window: time.Minute, key: "wildcard|files=files/*"},
		{entries: e("files=files/b.csv"), ok: true, units: 100, window: time.Minute, key: "wildcard|files=files/*"},
		{entries: e("user=user/1", "action=read"), ok: true, units: 150, window: time.Minute, key: "wildcard|user=user/*|action=read"},
		{entries: e("user=user/2", "action=read"), ok: true, units: 150, window: time.Minute, key: "wildcard|user=user/*|action=read"},
		{entries: e("user=other", "action=read")},
	})
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, s string
		want    bool
	}{
		{"*", "", true},
		{"*", "abc", true},
		{"a*", "a", true},
		{"a*", "ba", false},
		{"*a", "ba", true},
		{"a*a", "a", false}, // prefix and suffix may not overlap
		{"a*a", "aa", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "acbc", true},
		{"a*b*c", "acb", false},
		{"a**b", "ab", true},
		{"ab*ba", "aba", false},
		{"x*y*x", "xyx", true},
		{"x*yy*x", "xyx", false},
	} {
		if got := globMatch(strings.Split(tc.glob, "*"), tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %t, want %t", tc.glob, tc.s, got, tc.want)
		}
	}
}

func TestMatchExtensions(t *testing.T) {
	c := loadEnvoy(t, "envoy_extensions.yaml")
	const d = "extensions"
	checkMatches(t, c, d, []matchCase{
		{entries: e("window=x"), ok: true, units: 3, window: 90 * time.Second},
		{entries: e("both=x"), ok: true, units: 10, window: 2 * time.Hour},
		{entries: e("week=x"), ok: true, units: 7, window: 7 * 24 * time.Hour},
		{entries: e("month=x"), ok: true, units: 30, window: 30 * 24 * time.Hour},
		{entries: e("blocked=x"), ok: true, units: 0, window: time.Second},
		{entries: e("shadow=x"), ok: true, units: 1, window: time.Minute},
		{entries: e("free=x"), ok: true},
	})
	r, _ := c.Match(d, e("window=x"))
	if r.Limit.Algorithm != tollgate.GCRA || r.Name != "ninety-seconds" {
		t.Errorf("window rule = %+v", r)
	}
	if r, _ := c.Match(d, e("week=x")); r.Limit.Algorithm != tollgate.SlidingWindow {
		t.Errorf("week rule = %+v", r)
	}
	if r, _ := c.Match(d, e("shadow=x")); !r.Shadow {
		t.Errorf("shadow rule = %+v", r)
	}
	if r, _ := c.Match(d, e("open=x")); r.FailureMode != policy.FailOpen {
		t.Errorf("open rule = %+v", r)
	}
	if r, _ := c.Match(d, e("local=x")); r.FailureMode != policy.FailLocal {
		t.Errorf("local rule = %+v", r)
	}
	if r, _ := c.Match(d, e("closed=x")); r.FailureMode != policy.FailClosed {
		t.Errorf("closed rule = %+v", r)
	}
	if r, _ := c.Match(d, e("window=x")); r.FailureMode != policy.FailClosed {
		t.Errorf("rules fail closed by default: %+v", r)
	}
	if r, _ := c.Match(d, e("free=x")); !r.Unlimited {
		t.Errorf("free rule = %+v", r)
	}
	if r, _ := c.Match(d, e("vip=x")); r.Name != "vip" || !slices.Equal(r.Replaces, []string{"per-user"}) {
		t.Errorf("vip rule = %+v", r)
	}
}

func TestLoadEnvoyDirectory(t *testing.T) {
	c := loadEnvoy(t, "envoy_dir")
	if got := c.Domains(); !slices.Equal(got, []string{"dir-a", "dir-b"}) {
		t.Fatalf("Domains() = %v (hidden or non-YAML files read?)", got)
	}
	checkMatches(t, c, "dir-a", []matchCase{{entries: e("k=v"), ok: true, units: 1, window: time.Second}})
	checkMatches(t, c, "dir-b", []matchCase{{entries: e("k=v"), ok: true, units: 2, window: time.Minute}})
}

func TestRuleKeysDoNotCollide(t *testing.T) {
	c, err := ParseEnvoy([]byte(`
domain: d
descriptors:
  - key: a
    rate_limit: {unit: second, requests_per_unit: 1}
    descriptors:
      - key: b
        rate_limit: {unit: second, requests_per_unit: 1}
  - key: a|b
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: a=b
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: '#a'
    rate_limit: {unit: second, requests_per_unit: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string][]policy.Entry)
	for _, es := range [][]policy.Entry{
		e("a=b|b=c"), e("a=b", "b=c"), e("a|b=c"), e("a|b=c="),
		e("a=x=y"), e("a=x\\"), e("a=x\\", "b="), e("a=x", "b=\\"),
		e("a==b"), e("a=b=c"), e("a=", "b=c"), e("#a=1"), e("a=#"),
		e("a=\\|"), e("a=|"),
	} {
		r, ok := c.Match("d", es)
		if !ok {
			t.Fatalf("no rule for %v", es)
		}
		if other, dup := seen[r.Key]; dup {
			t.Errorf("%v and %v share key %q", es, other, r.Key)
		}
		seen[r.Key] = es
	}
}

func TestLongRuleKeyIsHashed(t *testing.T) {
	c := loadEnvoy(t, "envoy_basic.yaml")
	long := strings.Repeat("v", MaxKeyLen)
	r1, _ := c.Match("test-domain", e("key2="+long))
	r2, _ := c.Match("test-domain", e("key2="+long+"w"))
	for _, r := range []policy.Rule{r1, r2} {
		if len(r.Key) != 44 || r.Key[0] != '#' {
			t.Errorf("Key = %q, want '#' and 43 base64url characters", r.Key)
		}
	}
	if r1.Key == r2.Key {
		t.Error("different long values share a key")
	}
	short, _ := c.Match("test-domain", e("key2=short"))
	if short.Key != "test-domain|key2=short" {
		t.Errorf("short key = %q", short.Key)
	}
}

func TestSameDescriptorAtOtherLevels(t *testing.T) {
	// The same descriptor key/value at different levels or under different
	// parents is not a duplicate.
	_, err := ParseEnvoy([]byte(`
domain: d
descriptors:
  - key: a
    descriptors:
      - key: a
  - key: a
    value: x
    descriptors:
      - key: a
`))
	if err != nil {
		t.Fatal(err)
	}
}
