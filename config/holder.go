package config

import (
	"context"
	"crypto/sha256"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// DefaultPollInterval is how often Watch polls when its interval is 0 or
// less.
const DefaultPollInterval = 5 * time.Second

// Holder holds the current policy Config of a file. Reload and Watch swap in
// a new Config only when it loads and validates; otherwise the old one stays.
// It is safe for concurrent use: readers never block.
type Holder struct {
	h holder[Config]
}

// NewHolder loads the policy file at path (see Load) into a new Holder.
func NewHolder(path string) (*Holder, error) {
	h := &Holder{h: holder[Config]{path: path, read: readPolicy, parse: parsePolicyFile}}
	if err := h.h.init(); err != nil {
		return nil, err
	}
	return h, nil
}

// Config returns the current Config.
func (h *Holder) Config() *Config { return h.h.cur.Load() }

// Policy looks name up in the current Config.
func (h *Holder) Policy(name string) (policy.Policy, bool) { return h.Config().Policy(name) }

// Reload reads and validates the file again and, if that succeeds, makes it
// the current Config. On error the current Config stays.
func (h *Holder) Reload() error {
	_, err := h.h.reload(false)
	return err
}

// Watch polls the file every interval (DefaultPollInterval if interval <= 0)
// until ctx is done, then returns. A poll reads the file and compares its
// SHA-256 with that of the content last loaded or tried; this is cheap for a
// config file, and unlike a modification time it sees every change,
// including a symbolic link swapped to another file as in a Kubernetes
// ConfigMap. When the content (or the read error) changed it reloads as
// Reload does and calls notify, if not nil, with the result: nil when the
// new Config is current, else the error (the old Config stays). Content that
// already failed is not reported again until it changes. Run Watch in its
// own goroutine.
func (h *Holder) Watch(ctx context.Context, interval time.Duration, notify func(error)) {
	h.h.watch(ctx, interval, notify)
}

// EnvoyHolder holds the current EnvoyConfig of a file or directory (see
// LoadEnvoy), like Holder. Its Match makes it a rule source that follows
// reloads.
type EnvoyHolder struct {
	h holder[EnvoyConfig]
}

// NewEnvoyHolder loads the Envoy configs at path (see LoadEnvoy) into a new
// EnvoyHolder.
func NewEnvoyHolder(path string) (*EnvoyHolder, error) {
	h := &EnvoyHolder{h: holder[EnvoyConfig]{path: path, read: readEnvoy, parse: parseEnvoy}}
	if err := h.h.init(); err != nil {
		return nil, err
	}
	return h, nil
}

// Config returns the current EnvoyConfig.
func (h *EnvoyHolder) Config() *EnvoyConfig { return h.h.cur.Load() }

// Match matches against the current EnvoyConfig (see EnvoyConfig.Match).
func (h *EnvoyHolder) Match(domain string, entries []policy.Entry) (policy.Rule, bool) {
	return h.Config().Match(domain, entries)
}

// Reload reads and validates the configs again and, if that succeeds, makes
// them current. On error the current EnvoyConfig stays.
func (h *EnvoyHolder) Reload() error {
	_, err := h.h.reload(false)
	return err
}

// Watch polls the configs as Holder.Watch does; for a directory the
// fingerprint covers the names and contents of all its config files, so
// adding, removing or editing one is a change.
func (h *EnvoyHolder) Watch(ctx context.Context, interval time.Duration, notify func(error)) {
	h.h.watch(ctx, interval, notify)
}

func readPolicy(path string) ([]source, error) {
	src, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return []source{src}, nil
}

func parsePolicyFile(srcs []source) (*Config, error) { return parsePolicies(srcs[0]) }

// holder is the generic core of Holder and EnvoyHolder.
type holder[T any] struct {
	path  string
	read  func(path string) ([]source, error)
	parse func([]source) (*T, error)
	cur   atomic.Pointer[T]

	mu   sync.Mutex // serialises loads and guards seen
	seen [sha256.Size]byte
}

func (h *holder[T]) init() error {
	_, err := h.reload(false)
	return err
}

// reload reads and parses the path and stores the result if valid. When
// onlyIfChanged, content (or a read error) identical to the last seen is
// skipped and reported as not changed.
func (h *holder[T]) reload(onlyIfChanged bool) (changed bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	srcs, err := h.read(h.path)
	fp := fingerprint(srcs, err)
	if onlyIfChanged && fp == h.seen {
		return false, nil
	}
	h.seen = fp
	if err != nil {
		return true, err
	}
	c, err := h.parse(srcs)
	if err != nil {
		return true, err
	}
	h.cur.Store(c)
	return true, nil
}

func (h *holder[T]) watch(ctx context.Context, interval time.Duration, notify func(error)) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if changed, err := h.reload(true); changed && notify != nil {
			notify(err)
		}
	}
}

// fingerprint hashes the names and contents of srcs, or the read error.
func fingerprint(srcs []source, err error) [sha256.Size]byte {
	d := sha256.New()
	if err != nil {
		d.Write([]byte("error\x00" + err.Error()))
	}
	for _, s := range srcs {
		d.Write([]byte(s.name + "\x00" + strconv.Itoa(len(s.data)) + "\x00"))
		d.Write(s.data)
	}
	var fp [sha256.Size]byte
	d.Sum(fp[:0])
	return fp
}
