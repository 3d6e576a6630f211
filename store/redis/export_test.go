package redis

import "github.com/redis/rueidis"

// Hooks for the external tests.

func (s *Store) HealNow(reason string) { s.heal(reason, 0, KindOther, 0, s.now()) }

func (s *Store) Client() rueidis.Client { return s.c() }
