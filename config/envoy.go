package config

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/policy"
)

// MaxKeyLen is the longest policy.Rule.Key in bytes. A longer key (long descriptor
// values) is replaced by "#" and the unpadded base64url SHA-256 of the full
// key, 44 bytes, which no readable key can equal.
const MaxKeyLen = 256

// Envoy rate limit units and their windows, as envoyproxy/ratelimit counts
// them (src/utils: a month is 30 days). "year" (365 days) is longer than
// tollgate.MaxWindow and rejected.
var envoyUnits = map[string]time.Duration{
	"second": time.Second,
	"minute": time.Minute,
	"hour":   time.Hour,
	"day":    24 * time.Hour,
	"week":   7 * 24 * time.Hour,
	"month":  30 * 24 * time.Hour,
}

// EnvoyConfig is a validated set of envoyproxy/ratelimit descriptor configs,
// one per domain. It is immutable, so safe for concurrent use. A nil
// *EnvoyConfig has no domains.
//
// Each file holds one domain:
//
//	domain: api                      # required, unique across files
//	descriptors:                     # optional
//	  - key: remote_address          # required
//	    value: ""                    # optional: "" matches any value; "*" globs, e.g. "files/*"
//	    rate_limit:                  # optional; without it (and without descriptors) the value is allowed
//	      unit: minute               # second, minute, hour, day, week or month (30 days), any case
//	      requests_per_unit: 100     # required unless unlimited; 0 denies every request
//	      unlimited: false           # true: no limit (then no unit, window or algorithm)
//	      name: per-ip               # optional, for replaces
//	      replaces: [{name: other}]  # optional: drop the matched rules with these names
//	      window: 90s                # Tollgate extension: a Go duration; overrides unit (which, if given, must still be valid)
//	      algorithm: sliding_log     # Tollgate extension: sliding_log (default), sliding_window or gcra
//	      failure_mode: fail_closed  # Tollgate extension: fail_closed (default), fail_open or fail_local when the store is unavailable
//	      stop_charging_when_over: false  # Tollgate extension: keep no hits of a request that another of its descriptors puts over its limit
//	    shadow_mode: false           # report, never deny
//	    share_threshold: false       # all values matching this glob value share one counter
//	    detailed_metric: false       # accepted for compatibility; Tollgate keeps no per-descriptor metrics
//	    value_to_metric: false       # likewise
//	    descriptors: [...]           # nested descriptors, same shape
//
// Unknown fields, an empty key, two descriptors with the same key and value
// at one level, an unknown or missing unit, "year", replaces naming itself or
// empty, share_threshold on a value without "*", and the envoyproxy/ratelimit
// fields Tollgate does not implement (quota_mode: true, metadata) are
// errors. Note that envoyproxy/ratelimit counts in fixed windows aligned to
// the unit; Tollgate's windows roll (see tollgate.Algorithm).
type EnvoyConfig struct {
	domains map[string]level
}

// Entry is policy.Entry, kept here for the callers of Match that name it.
type Entry = policy.Entry

type level map[string]*keyNodes // by descriptor key

// keyNodes are the descriptors of one key at one level.
type keyNodes struct {
	values map[string]*descNode // by configured value, globs included
	globs  []*descNode          // values containing '*', in file order
	any    *descNode            // the descriptor without a value
}

type descNode struct {
	value    string
	parts    []string     // value split on '*', for globs
	share    bool         // share_threshold
	rule     *policy.Rule // nil: no rate_limit; Key unset
	children level
}

// Domains returns the configured domains, sorted.
func (c *EnvoyConfig) Domains() []string {
	if c == nil {
		return nil
	}
	ds := make([]string, 0, len(c.domains))
	for d := range c.domains {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds
}

// Match returns the rule for a request descriptor in domain, as
// envoyproxy/ratelimit's GetLimit finds it, and whether there is one.
//
// Each entry in turn selects a descriptor among those of the level reached
// so far (starting with the domain's top level): one with the entry's key
// and exactly its value; else the first, in file order, with the entry's key
// and a glob value (each '*' matching any run of characters) that matches;
// else the one with the entry's key and no value. There is no backtracking.
// A rule applies only if every entry selects a descriptor and the last one
// has a rate_limit: a descriptor with more entries than the config's path,
// or fewer, gets no rule, as does one that ends on a descriptor without
// rate_limit (which is how a value is exempted). An unknown domain or an
// empty entry list gets no rule.
func (c *EnvoyConfig) Match(domain string, entries []policy.Entry) (policy.Rule, bool) {
	if c == nil || len(entries) == 0 {
		return policy.Rule{}, false
	}
	lvl, ok := c.domains[domain]
	if !ok {
		return policy.Rule{}, false
	}
	var (
		n      *descNode
		shared []string // per entry, the share_threshold glob it matched
	)
	for i, e := range entries {
		kn := lvl[e.Key]
		if kn == nil {
			return policy.Rule{}, false
		}
		n = kn.values[e.Value]
		if n == nil {
			for _, g := range kn.globs {
				if globMatch(g.parts, e.Value) {
					n = g
					if g.share {
						if shared == nil {
							shared = make([]string, len(entries))
						}
						shared[i] = g.value
					}
					break
				}
			}
		}
		if n == nil {
			n = kn.any
		}
		if n == nil {
			return policy.Rule{}, false
		}
		lvl = n.children
	}
	if n.rule == nil {
		return policy.Rule{}, false
	}
	r := *n.rule
	if !r.Unlimited {
		r.Key = ruleKey(domain, entries, shared)
	}
	return r, true
}

// globMatch reports whether s matches the glob split on '*' into parts
// (at least two).
func globMatch(parts []string, s string) bool {
	first, last := parts[0], parts[len(parts)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return true
}

var keyEscaper = strings.NewReplacer(`\`, `\\`, `|`, `\|`, `=`, `\=`, `#`, `\#`)

// ruleKey builds a policy.Rule.Key; shared, if not nil, holds per entry a glob to
// use instead of the value.
func ruleKey(domain string, entries []policy.Entry, shared []string) string {
	var b strings.Builder
	_, _ = keyEscaper.WriteString(&b, domain)
	for i, e := range entries {
		v := e.Value
		if shared != nil && shared[i] != "" {
			v = shared[i]
		}
		b.WriteByte('|')
		_, _ = keyEscaper.WriteString(&b, e.Key)
		b.WriteByte('=')
		_, _ = keyEscaper.WriteString(&b, v)
	}
	if b.Len() <= MaxKeyLen {
		return b.String()
	}
	sum := sha256.Sum256([]byte(b.String()))
	return "#" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// YAML shapes of an Envoy config file.
type (
	envoyFile struct {
		Domain      string           `yaml:"domain"`
		Descriptors []descriptorYAML `yaml:"descriptors"`
	}
	descriptorYAML struct {
		Key            string           `yaml:"key"`
		Value          string           `yaml:"value"`
		RateLimit      *rateLimitYAML   `yaml:"rate_limit"`
		Descriptors    []descriptorYAML `yaml:"descriptors"`
		ShadowMode     bool             `yaml:"shadow_mode"`
		ShareThreshold bool             `yaml:"share_threshold"`
		DetailedMetric bool             `yaml:"detailed_metric"`
		ValueToMetric  bool             `yaml:"value_to_metric"`
		QuotaMode      bool             `yaml:"quota_mode"`
		Metadata       any              `yaml:"metadata"`
	}
	rateLimitYAML struct {
		Unit            string         `yaml:"unit"`
		RequestsPerUnit *int64         `yaml:"requests_per_unit"`
		Unlimited       bool           `yaml:"unlimited"`
		Name            string         `yaml:"name"`
		Replaces        []replacesYAML `yaml:"replaces"`
		Window          string         `yaml:"window"`
		Algorithm       string         `yaml:"algorithm"`
		FailureMode     string         `yaml:"failure_mode"`
		StopCharging    bool           `yaml:"stop_charging_when_over"`
	}
	replacesYAML struct {
		Name string `yaml:"name"`
	}
)

// LoadEnvoy reads and validates envoyproxy/ratelimit configs at path: a
// file, or a directory whose *.yaml and *.yml files (not in subdirectories,
// not hidden, symbolic links followed) are read in name order. A directory
// without such files is an error, as is a domain in two files.
func LoadEnvoy(path string) (*EnvoyConfig, error) {
	srcs, err := readEnvoy(path)
	if err != nil {
		return nil, err
	}
	return parseEnvoy(srcs)
}

// ParseEnvoy validates one Envoy config file's content. Errors give lines as
// "line N: ".
func ParseEnvoy(data []byte) (*EnvoyConfig, error) {
	return parseEnvoy([]source{{data: data}})
}

func readEnvoy(path string) ([]source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		src, err := readFile(path)
		if err != nil {
			return nil, err
		}
		return []source{src}, nil
	}
	des, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return nil, err
	}
	var srcs []source
	for _, de := range des {
		name := de.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		p := filepath.Join(path, name)
		fi, err := os.Stat(p) // follows symbolic links, as in a Kubernetes ConfigMap
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			continue
		}
		src, err := readFile(p)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("%s: no *.yaml or *.yml files in directory", path)
	}
	return srcs, nil
}

func parseEnvoy(srcs []source) (*EnvoyConfig, error) {
	c := &EnvoyConfig{domains: make(map[string]level, len(srcs))}
	where := make(map[string]string, len(srcs)) // domain → "file:line"
	for _, src := range srcs {
		var f envoyFile
		root, err := decodeStrict(src, &f)
		if err != nil {
			return nil, err
		}
		line := lineOf(root, "domain")
		if f.Domain == "" {
			return nil, errorAt(src.name, line, "domain is required")
		}
		if first, dup := where[f.Domain]; dup {
			return nil, errorAt(src.name, line, "duplicate domain %q (first in %s)", f.Domain, first)
		}
		p := &envoyParser{name: src.name, root: root, domain: f.Domain}
		lvl, err := p.level(f.Descriptors, []any{"descriptors"}, "")
		if err != nil {
			return nil, err
		}
		c.domains[f.Domain] = lvl
		where[f.Domain] = strings.TrimSuffix(position(src.name, line), ": ")
	}
	return c, nil
}

type envoyParser struct {
	name   string
	root   *yaml.Node
	domain string
}

// level validates the descriptors at path (a YAML path to their list) below
// the composite name parent ("" at the top).
func (p *envoyParser) level(ds []descriptorYAML, path []any, parent string) (level, error) {
	lvl := make(level)
	seen := make(map[policy.Entry]int, len(ds)) // key and value → index
	for i, d := range ds {
		dpath := append(slices.Clip(path), i)
		if d.Key == "" {
			return nil, errorAt(p.name, lineOf(p.root, dpath...),
				"domain %q: descriptor #%d under %q: key is required", p.domain, i+1, parent)
		}
		name := d.Key // as envoyproxy/ratelimit names it: key1_value1.key2
		if d.Value != "" {
			name += "_" + d.Value
		}
		if parent != "" {
			name = parent + "." + name
		}
		at := func(field string, format string, args ...any) error {
			line := lineOf(p.root, append(slices.Clip(dpath), field)...)
			return errorAt(p.name, line, "domain %q: descriptor %q: "+format, append([]any{p.domain, name}, args...)...)
		}
		if j, dup := seen[policy.Entry{Key: d.Key, Value: d.Value}]; dup {
			field := "value"
			if d.Value == "" {
				field = "key"
			}
			return nil, at(field, "duplicate descriptor (first at line %d)", lineOf(p.root, append(slices.Clip(path), j)...))
		}
		seen[policy.Entry{Key: d.Key, Value: d.Value}] = i
		if d.QuotaMode {
			return nil, at("quota_mode", "quota_mode is not supported")
		}
		if d.Metadata != nil {
			return nil, at("metadata", "metadata is not supported")
		}

		n := &descNode{value: d.Value, share: d.ShareThreshold}
		if strings.Contains(d.Value, "*") {
			n.parts = strings.Split(d.Value, "*")
		} else if d.ShareThreshold {
			return nil, at("share_threshold", "share_threshold needs a value with '*', not %q", d.Value)
		}
		if d.RateLimit != nil {
			r, err := p.rule(d.RateLimit, dpath, name)
			if err != nil {
				return nil, err
			}
			r.Shadow = d.ShadowMode
			n.rule = r
		}
		children, err := p.level(d.Descriptors, append(slices.Clip(dpath), "descriptors"), name)
		if err != nil {
			return nil, err
		}
		n.children = children

		kn := lvl[d.Key]
		if kn == nil {
			kn = &keyNodes{values: make(map[string]*descNode)}
			lvl[d.Key] = kn
		}
		switch {
		case d.Value == "":
			kn.any = n
		case n.parts != nil:
			kn.globs = append(kn.globs, n)
			fallthrough
		default:
			kn.values[d.Value] = n
		}
	}
	return lvl, nil
}

// rule validates the rate_limit of the descriptor at dpath called name.
func (p *envoyParser) rule(rl *rateLimitYAML, dpath []any, name string) (*policy.Rule, error) {
	// at reports an error at the rate_limit's field (a path step or steps).
	at := func(field any, format string, args ...any) error {
		path := append(slices.Clip(dpath), "rate_limit")
		if steps, ok := field.([]any); ok {
			path = append(path, steps...)
		} else {
			path = append(path, field)
		}
		return errorAt(p.name, lineOf(p.root, path...), "domain %q: descriptor %q: rate_limit: "+format, append([]any{p.domain, name}, args...)...)
	}
	r := &policy.Rule{Name: rl.Name, StopChargingWhenOver: rl.StopCharging}
	for i, rep := range rl.Replaces {
		switch rep.Name {
		case "":
			return nil, at([]any{"replaces", i}, "replaces entry #%d has no name", i+1)
		case rl.Name:
			return nil, at([]any{"replaces", i}, "replaces its own name %q", rep.Name)
		}
		r.Replaces = append(r.Replaces, rep.Name)
	}
	if rl.Unlimited {
		for _, f := range []struct{ field, value string }{
			{"unit", rl.Unit}, {"window", rl.Window}, {"algorithm", rl.Algorithm}, {"failure_mode", rl.FailureMode},
		} {
			if f.value != "" {
				return nil, at(f.field, "unlimited takes no %s", f.field)
			}
		}
		r.Unlimited = true
		return r, nil
	}

	var window time.Duration
	if rl.Unit != "" {
		unit := strings.ToLower(rl.Unit)
		d, ok := envoyUnits[unit]
		switch {
		case unit == "year":
			return nil, at("unit", "%w: unit year (365 days) is longer than the longest window, 30 days; use month or a window", tollgate.ErrInvalidLimit)
		case !ok:
			return nil, at("unit", "%w: unknown unit %q (want second, minute, hour, day, week or month)", tollgate.ErrInvalidLimit, rl.Unit)
		}
		window = d
	}
	switch {
	case rl.Window != "":
		d, err := time.ParseDuration(rl.Window)
		if err != nil {
			return nil, at("window", "%w: window %q is not a Go duration such as \"1h\"", tollgate.ErrInvalidLimit, rl.Window)
		}
		window = d
	case rl.Unit == "":
		return nil, at("unit", "%w: unit is required (or a window)", tollgate.ErrInvalidLimit)
	}
	if rl.RequestsPerUnit == nil {
		return nil, at("requests_per_unit", "%w: requests_per_unit is required", tollgate.ErrInvalidLimit)
	}
	units := *rl.RequestsPerUnit
	if units < 0 || units > tollgate.MaxUnits {
		return nil, at("requests_per_unit", "%w: requests_per_unit %d out of range [0, %d]", tollgate.ErrInvalidLimit, units, int64(tollgate.MaxUnits))
	}
	alg, err := tollgate.ParseAlgorithm(rl.Algorithm)
	if err != nil {
		return nil, at("algorithm", "%w", err)
	}
	mode, err := policy.ParseFailureMode(rl.FailureMode)
	if err != nil {
		return nil, at("failure_mode", "unknown failure_mode %q (want %s, %s or %s)", rl.FailureMode, policy.FailClosed, policy.FailOpen, policy.FailLocal)
	}
	r.FailureMode = mode
	r.Limit = tollgate.Limit{Units: units, Window: window, Algorithm: alg}
	check := r.Limit
	check.Units = max(check.Units, 1) // 0 denies all; the rest must be valid
	if err := check.Validate(); err != nil {
		if rl.Window == "" {
			return nil, at("unit", "%w", err)
		}
		return nil, at("window", "%w", err)
	}
	return r, nil
}
