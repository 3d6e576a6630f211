package redis

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

const (
	// watchEvery and watchFor pace the slot-map watcher.
	watchEvery = 100 * time.Millisecond
	watchFor   = 20 * time.Second
)

// watch starts, unless one runs, a watcher of the slot map for a failing
// Cluster slot. The client reloads its slot map only after a random delay
// of up to a second (and not at all for calls that timed out), so after a
// crash or a black-holed master it would keep calling the old master for a
// while after the replica took over. The watcher asks the cluster who serves
// the slot; when that changes, it rebuilds the client at once.
func (s *Store) watch(sl uint16) {
	if !s.watching.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.watching.Store(false)
		first := ""
		for end := time.Now().Add(watchFor); time.Now().Before(end); {
			if s.health.failingSince[sl].Load() == 0 {
				return // served again
			}
			owner, _ := s.slotOwner(sl, first)
			switch {
			case owner == "":
			case first == "":
				first = owner
			case owner != first:
				s.rebuild("topology_changed", sl, "", 0, owner)
				return
			}
			select {
			case <-s.done:
				return
			case <-time.After(watchEvery):
			}
		}
	}()
}

// slotOwner asks every node the client knows, at once, which address
// serves sl, and returns the first answer that differs from was (or the
// first answer at all when was is ""): a dead or black-holed node cannot
// hold the answer up.
func (s *Store) slotOwner(sl uint16, was string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), watchEvery*2)
	defer cancel()
	nodes := s.c().Nodes()
	answers := make(chan string, len(nodes))
	for _, n := range nodes {
		go func() {
			owner, _ := askOwner(ctx, n, sl)
			answers <- owner
		}()
	}
	var same string
	for range nodes {
		select {
		case owner := <-answers:
			if owner == "" {
				continue
			}
			if owner != was {
				return owner, nil
			}
			same = owner
		case <-ctx.Done():
			return same, ctx.Err()
		}
	}
	return same, nil
}

func askOwner(ctx context.Context, c rueidis.Client, sl uint16) (string, error) {
	ranges, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return "", err
	}
	for _, r := range ranges {
		fields, err := r.ToArray()
		if err != nil || len(fields) < 3 {
			continue
		}
		lo, err1 := fields[0].AsInt64()
		hi, err2 := fields[1].AsInt64()
		node, err3 := fields[2].ToArray()
		if err1 != nil || err2 != nil || err3 != nil || len(node) < 2 || int64(sl) < lo || int64(sl) > hi {
			continue
		}
		host, _ := node[0].ToString()
		port, _ := node[1].AsInt64()
		return host + ":" + strconv.FormatInt(port, 10), nil
	}
	return "", nil
}
