package redis

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

const (
	// watchEvery paces the slot-map watcher's questions to each node;
	// watchFor bounds one watcher's life (a later failure starts another).
	watchEvery = 50 * time.Millisecond
	watchFor   = 20 * time.Second
	// askTimeout bounds one CLUSTER SLOTS question: a node that holds it up
	// (dead, black-holed) delays no answer from the others.
	askTimeout = time.Second
)

// watch starts, unless one runs, the watcher of the slot map for failing
// Cluster slots. The client reloads its slot map only after a random delay
// of up to a second (and not at all for calls that timed out), so after a
// crash or a black-holed master it would keep calling the old master for a
// while after the replica took over. The watcher notes who serves each
// failing slot, as the nodes tell it, and rebuilds the client as soon as a
// node names another owner for a slot that is still failing.
func (s *Store) watch() {
	if !s.watching.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.watching.Store(false)
		s.watchSlots()
	}()
}

// slotMap is one node's answer to CLUSTER SLOTS.
type slotMap struct {
	node   string
	ranges []slotRange
}

type slotRange struct {
	first, last uint16
	owner       string
	replicas    []string
}

func (m slotMap) owner(sl uint16) string {
	for _, r := range m.ranges {
		if r.first <= sl && sl <= r.last {
			return r.owner
		}
	}
	return ""
}

func (s *Store) watchSlots() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answers := make(chan slotMap)
	asking := map[string]bool{} // nodes with a question in flight
	owners := map[uint16]string{}
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for end := time.Now().Add(watchFor); time.Now().Before(end); {
		select {
		case <-s.done:
			return
		case m := <-answers:
			asking[m.node] = false
			for sl, was := range owners {
				if now := m.owner(sl); now != "" && was != "" && now != was {
					s.rebuild("topology_changed", sl, "", 0, now)
					return
				}
			}
			for sl, was := range owners {
				if was == "" {
					owners[sl] = m.owner(sl)
				}
			}
		case <-tick.C:
			failing := s.health.failing(s.now(), watchFor)
			if len(failing) == 0 {
				return // served again
			}
			next := make(map[uint16]string, len(failing))
			for _, sl := range failing {
				next[sl] = owners[sl] // "" until a node names the owner
			}
			owners = next
			for addr, n := range s.c().Nodes() {
				if asking[addr] {
					continue
				}
				asking[addr] = true
				go func() {
					m := slotMap{node: addr}
					actx, acancel := context.WithTimeout(ctx, askTimeout)
					m.ranges, _ = askSlots(actx, n)
					acancel()
					select {
					case answers <- m:
					case <-ctx.Done():
					}
				}()
			}
		}
	}
}

// askSlots asks one node for its slot map.
func askSlots(ctx context.Context, c rueidis.Client) ([]slotRange, error) {
	ranges, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, err
	}
	var m []slotRange
	for _, r := range ranges {
		fields, err := r.ToArray()
		if err != nil || len(fields) < 3 {
			continue
		}
		lo, err1 := fields[0].AsInt64()
		hi, err2 := fields[1].AsInt64()
		node, err3 := fields[2].ToArray()
		if err1 != nil || err2 != nil || err3 != nil || len(node) < 2 {
			continue
		}
		r := slotRange{first: uint16(lo), last: uint16(hi), owner: nodeAddr(node)}
		for _, f := range fields[3:] {
			if replica, err := f.ToArray(); err == nil && len(replica) >= 2 {
				r.replicas = append(r.replicas, nodeAddr(replica))
			}
		}
		m = append(m, r)
	}
	return m, nil
}

// nodeAddr is the "host:port" of a node entry of CLUSTER SLOTS.
func nodeAddr(node []rueidis.RedisMessage) string {
	host, _ := node[0].ToString()
	port, _ := node[1].AsInt64()
	return net.JoinHostPort(host, strconv.FormatInt(port, 10))
}
