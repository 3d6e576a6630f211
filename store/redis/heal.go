package redis

// Rebuilding the client: a new rueidis client swapped in for one whose view
// of the cluster went wrong.

import (
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/redis/rueidis"
)

// heal replaces the client with one built anew from the seed addresses, when
// the gate allows, and retires the old one.
func (s *Store) heal(reason string, sl uint16, kind Kind, failing time.Duration, now time.Time) {
	if !s.healGate.try(now) {
		return
	}
	go s.rebuild(reason, sl, kind.String(), failing) // off the caller's path: dialing takes time
}

// rebuild builds a new client, swaps it in and retires the old one, and
// reports whether it did. With from, the client loads its slot map from
// those nodes alone: a node that just took slots over knows it before the
// others, whose older map would send the new client back to the old
// master. Otherwise, or when they do not answer, it starts from the last
// known topology (every node the old client knows), and only then from the
// seeds, whose names are resolved again: every seed may be gone.
func (s *Store) rebuild(reason string, sl uint16, kind string, failing time.Duration, from ...string) bool {
	o := s.options
	var client rueidis.Client
	err := errors.New("no address")
	var known []string
	s.follow.mu.Lock()
	seen := maps.Clone(s.follow.seen)
	s.follow.mu.Unlock()
	if seen == nil {
		seen = map[string]bool{}
	}
	for addr := range s.c().Nodes() {
		seen[addr] = true
	}
	for addr := range seen {
		if !slices.Contains(from, addr) {
			known = append(known, addr)
		}
	}
	for _, addrs := range [][]string{from, known, s.options.InitAddress} {
		if err == nil || len(addrs) == 0 {
			continue
		}
		o.InitAddress = addrs
		client, err = rueidis.NewClient(o)
	}
	s.healMu.Lock()
	defer s.healMu.Unlock()
	if s.closed {
		if err == nil {
			client.Close()
		}
		return false
	}
	if err != nil {
		s.healGate.failed(s.now())
		s.log.Warn("redis: could not rebuild the client", "reason", reason, "err", err)
		return false
	}
	old := s.client.Swap(&client)
	s.retired = append(s.retired, *old)
	if s.health != nil {
		s.health.reset()
	}
	s.obs.Heal(reason)
	s.log.Warn("redis: client rebuilt", "reason", reason, "slot", sl, "error_kind", kind,
		"failing_for", failing.String(), "from", o.InitAddress)
	// In-flight calls on the old client finish within their deadlines.
	time.AfterFunc(retireGrace, func() {
		s.healMu.Lock()
		defer s.healMu.Unlock()
		if i := slices.Index(s.retired, *old); i >= 0 {
			s.retired = slices.Delete(s.retired, i, i+1)
			(*old).Close()
		}
	})
	return true
}
