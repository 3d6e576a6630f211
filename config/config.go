// Package config loads Tollgate's rate-limit rules from YAML: named policies
// for the HTTP API and library users, and envoyproxy/ratelimit descriptor
// configs for the Envoy rate limit service (package server/rls).
// It parses them into the types of package policy (policy.Policy,
// policy.Rule), which the servers use without a YAML parser.
//
// # Policies
//
// A policy file names Limits:
//
//	policies:
//	  - name: api-hourly          # required, unique; 1 to MaxPolicyNameLen printable ASCII characters, no spaces
//	    units: 100                # required, 1 to tollgate.MaxUnits
//	    window: 1h                # required, a Go duration, tollgate.MinWindow to tollgate.MaxWindow
//	    algorithm: sliding_log    # sliding_log (default), sliding_window or gcra
//	    shadow: false             # decide and report, never deny; default false
//	    failure_mode: fail_closed # fail_closed (default), fail_open or fail_local
//	  - name: api-tiered          # several limits, checked together (tollgate.Limiter.ConsumeAll)
//	    limits:                   # 1 to tollgate.MaxLimits, instead of units/window/algorithm
//	      - {units: 10, window: 1s, algorithm: gcra}
//	      - {units: 1000, window: 1h}
//	      - {units: 20000, window: 24h, algorithm: sliding_window}
//
// Load and Parse read it; Config.Policy looks a policy up by name. The file
// may also hold a server section with the settings of `tollgate serve` (see
// Server); it is validated with the policies, so that a reload of a file
// whose server section is broken is rejected as a whole.
//
// # Envoy descriptor configs
//
// LoadEnvoy reads the configs of envoyproxy/ratelimit (a file, or a
// directory of *.yaml and *.yml files, one domain each) and
// EnvoyConfig.Match finds the rule for a request's descriptor the way
// envoyproxy/ratelimit does. See EnvoyConfig for the format.
//
// # Errors
//
// Parsing is strict: unknown fields, duplicate keys, values of the wrong
// type and more than one YAML document are errors. Every error is returned,
// never panicked, and starts with "file:line: " where the position is known
// ("line N: " from Parse and ParseEnvoy). Errors about a Limit wrap
// tollgate.ErrInvalidLimit; file system errors wrap the *fs.PathError.
//
// # Reloading
//
// Holder and EnvoyHolder keep the current config behind an atomic pointer,
// swap in a new one only when it loads and validates, and can poll the
// file(s) for changes (Watch).
package config

import (
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/settings"
)

// Config is a validated set of policies, with the file's server section. It
// is immutable, so safe for concurrent use. A nil *Config has no policies
// and an empty Server.
type Config struct {
	policies []policy.Policy
	byName   map[string]int
	server   settings.File
}

// MaxPolicyNameLen is the longest policy name in bytes. Names are printable
// ASCII without spaces, so that they fit in HTTP header fields and logs as
// they are.
const MaxPolicyNameLen = 128

// Policy returns the policy called name and whether there is one.
func (c *Config) Policy(name string) (policy.Policy, bool) {
	if c == nil {
		return policy.Policy{}, false
	}
	i, ok := c.byName[name]
	if !ok {
		return policy.Policy{}, false
	}
	return c.policies[i], true
}

// Policies returns a copy of all policies in file order.
func (c *Config) Policies() []policy.Policy {
	if c == nil {
		return nil
	}
	return append([]policy.Policy(nil), c.policies...)
}

type policyFile struct {
	Server   yaml.Node    `yaml:"server"`
	Policies []policyYAML `yaml:"policies"`
}

type policyYAML struct {
	Name        string      `yaml:"name"`
	Units       int64       `yaml:"units"`
	Window      string      `yaml:"window"`
	Algorithm   string      `yaml:"algorithm"`
	Limits      []limitYAML `yaml:"limits"`
	Shadow      bool        `yaml:"shadow"`
	FailureMode string      `yaml:"failure_mode"`
}

type limitYAML struct {
	Units     int64  `yaml:"units"`
	Window    string `yaml:"window"`
	Algorithm string `yaml:"algorithm"`
}

// Load reads and validates the policy file at path. Errors name the file.
func Load(path string) (*Config, error) {
	src, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parsePolicies(src)
}

// Parse validates a policy file's content. Errors give lines as "line N: ".
// An empty policy list is valid; an empty document is not.
func Parse(data []byte) (*Config, error) {
	return parsePolicies(source{data: data})
}

func parsePolicies(src source) (*Config, error) {
	var f policyFile
	root, err := decodeStrict(src, &f)
	if err != nil {
		return nil, err
	}
	c := &Config{policies: make([]policy.Policy, 0, len(f.Policies)), byName: make(map[string]int, len(f.Policies))}
	for i, p := range f.Policies {
		at := func(field string, format string, args ...any) error {
			line := lineOf(root, "policies", i, field)
			if p.Name == "" {
				return errorAt(src.name, line, "policy #%d: "+format, append([]any{i + 1}, args...)...)
			}
			return errorAt(src.name, line, "policy %q: "+format, append([]any{p.Name}, args...)...)
		}
		pol, err := policyOf(p, at)
		if err != nil {
			return nil, err
		}
		if j, dup := c.byName[p.Name]; dup {
			return nil, at("name", "duplicate name (first at line %d)", lineOf(root, "policies", j, "name"))
		}
		c.byName[p.Name] = len(c.policies)
		c.policies = append(c.policies, pol)
	}
	if c.server, err = serverOf(src, root, f.Server); err != nil {
		return nil, err
	}
	return c, nil
}

// policyOf validates p; at reports an error at a field of p.
func policyOf(p policyYAML, at func(field, format string, args ...any) error) (policy.Policy, error) {
	if p.Name == "" {
		return policy.Policy{}, at("name", "name is required")
	}
	if !validName(p.Name) {
		return policy.Policy{}, at("name", "name must be 1 to %d printable ASCII characters without spaces", MaxPolicyNameLen)
	}
	pol := policy.Policy{Name: p.Name, Shadow: p.Shadow}
	switch {
	case p.Limits == nil:
		lim, err := limitOf(limitYAML{Units: p.Units, Window: p.Window, Algorithm: p.Algorithm}, at)
		if err != nil {
			return policy.Policy{}, err
		}
		pol.Limits = []tollgate.Limit{lim}
	case p.Units != 0 || p.Window != "" || p.Algorithm != "":
		return policy.Policy{}, at("limits", "%w: give either limits or units, window and algorithm", tollgate.ErrInvalidLimit)
	case len(p.Limits) == 0 || len(p.Limits) > tollgate.MaxLimits:
		return policy.Policy{}, at("limits", "%w: %d limits (want 1 to %d)", tollgate.ErrInvalidLimits, len(p.Limits), tollgate.MaxLimits)
	default:
		for i, l := range p.Limits {
			lim, err := limitOf(l, func(field, format string, args ...any) error {
				return at("limits", "limit #%d: %s: "+format, append([]any{i + 1, field}, args...)...)
			})
			if err != nil {
				return policy.Policy{}, err
			}
			for _, prev := range pol.Limits {
				if prev.Algorithm == lim.Algorithm && prev.Window == lim.Window {
					return policy.Policy{}, at("limits", "%w: limit #%d repeats the %s window %s", tollgate.ErrInvalidLimits, i+1, lim.Algorithm, lim.Window)
				}
			}
			pol.Limits = append(pol.Limits, lim)
		}
	}
	mode, err := policy.ParseFailureMode(p.FailureMode)
	if err != nil {
		return policy.Policy{}, at("failure_mode", "unknown failure_mode %q (want %s, %s or %s)", p.FailureMode, policy.FailClosed, policy.FailOpen, policy.FailLocal)
	}
	pol.FailureMode = mode
	return pol, nil
}

// limitOf validates one limit of a policy; at reports an error at a field.
func limitOf(l limitYAML, at func(field, format string, args ...any) error) (tollgate.Limit, error) {
	if l.Window == "" {
		return tollgate.Limit{}, at("window", "%w: window is required (a Go duration such as \"1h\")", tollgate.ErrInvalidLimit)
	}
	window, err := time.ParseDuration(l.Window)
	if err != nil {
		return tollgate.Limit{}, at("window", "%w: window %q is not a Go duration such as \"1h\"", tollgate.ErrInvalidLimit, l.Window)
	}
	alg, err := tollgate.ParseAlgorithm(l.Algorithm)
	if err != nil {
		return tollgate.Limit{}, at("algorithm", "%w", err)
	}
	lim := tollgate.Limit{Units: l.Units, Window: window, Algorithm: alg}
	if err := lim.Validate(); err != nil {
		field := "window"
		if l.Units < 1 || l.Units > tollgate.MaxUnits {
			field = "units"
		}
		return tollgate.Limit{}, at(field, "%w", err)
	}
	return lim, nil
}

// validName reports whether name is a valid policy name.
func validName(name string) bool {
	if name == "" || len(name) > MaxPolicyNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' {
			return false
		}
	}
	return true
}
