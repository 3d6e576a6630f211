package chaos_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcluster"
)

// The scenarios in this file run on the cluster behind fault proxies.

// TestBlackHole partitions a master away (its proxies hold every byte, and
// the other nodes' proxies hold what it sends), so that calls to it time out
// instead of failing fast, until its replica takes over; then heals the
// partition, when the old master rejoins as a replica. Twice, on different
// shards. Every slot must serve again within crashBound of the partition;
// the second time the clients are idle from the moment the replica has taken
// over until idleFor later, and must then serve within gracefulBound. Units lost are reported, not asserted: replication to the
// replica is cut at the same instant.
func TestBlackHole(t *testing.T) {
	c, ps := needProxied(t)
	s := newScenarioOn(t, c, "black-hole", false)
	for run := range runs {
		sh := s.shards()[run%3]
		master, replica := sh.Master, sh.Replicas[0]
		bound := crashBound
		if run == 1 {
			// Counted from the resume, when the cluster has long been ok.
			bound = gracefulBound
		}
		s.run(fault{
			name:       fmt.Sprintf("run %d: black hole around master %s", run+1, master.Announced()),
			bound:      bound,
			pauseAfter: run == 1,
			inject:     func() ([]string, error) { ps.partition(master); return nil, nil },
			healthy:    func() error { return waitPromoted(s.ctx, c, replica, master) },
		})
		s.run(fault{
			name:      fmt.Sprintf("run %d: partition of %s healed", run+1, master.Announced()),
			bound:     gracefulBound,
			keep:      true,
			idleAfter: true,
			inject:    func() ([]string, error) { ps.heal(master); return nil, nil },
		})
	}
}

// TestStuckMoved recreates the seed's stuck state: connections to a master
// that answer MOVED for its own slots, pointing back at the same address,
// although the topology (CLUSTER SLOTS from any node) says that address owns
// them. The master's proxy sends new connections to another master while
// the master drops its clients (CLIENT KILL), so the clients re-dial into
// the wrong node; then it sends new connections to the right node again.
// Only a client that drops such a connection and dials again heals. Twice;
// the second time the clients are idle once the stuck connections exist.
// No slot may keep failing for stuckAfter.
func TestStuckMoved(t *testing.T) {
	c, ps := needProxied(t)
	s := newScenarioOn(t, c, "stuck-moved", true)
	for run := range runs {
		shards := s.shards()
		a, b := shards[run%3].Master, shards[(run+1)%3].Master
		s.run(fault{
			name:       fmt.Sprintf("run %d: connections to %s land on %s", run+1, a.Announced(), b.Announced()),
			bound:      stuckAfter,
			pauseAfter: run == 1,
			idleAfter:  run == 0,
			inject:     func() ([]string, error) { return s.misroute(ps, a, b) },
		})
	}
}

// misroute makes the clients' connections to a's address reach b, and
// checks that b answered MOVED on them.
func (s *scenario) misroute(ps *proxies, a, b *testcluster.Node) ([]string, error) {
	p, _ := ps.of(a)
	moved0, err := movedReplies(s, b)
	if err != nil {
		return nil, err
	}
	p.SetBackend(b.Addr)
	restored := false
	defer func() {
		if !restored {
			p.SetBackend(a.Addr)
		}
	}()
	if _, err := a.Do(s.ctx, "CLIENT", "KILL", "TYPE", "normal"); err != nil {
		return nil, err
	}
	// The clients re-dial on their next call to a.
	deadline := time.Now().Add(2 * time.Second)
	for p.Conns()[b.Addr] < clients && time.Now().Before(deadline) {
		sleep(s.ctx, 10*time.Millisecond)
	}
	p.SetBackend(a.Addr)
	restored = true
	conns := p.Conns()
	sleep(s.ctx, 200*time.Millisecond)
	moved, err := movedReplies(s, b)
	if err != nil {
		return nil, err
	}
	notes := []string{
		fmt.Sprintf("connections through %s's proxy: %d re-dialled into %s (wrong), %d to %s", a.Announced(), conns[b.Addr], b.Addr, conns[a.Addr], a.Addr),
		fmt.Sprintf("%s answered %d MOVED in the next 200 ms", b.Addr, moved-moved0),
	}
	s.load.Mark("misrouted", notes[0]+"; "+notes[1])
	if conns[b.Addr] == 0 || moved == moved0 {
		return notes, fmt.Errorf("the stuck state did not arise: %v", notes)
	}
	return notes, nil
}

// movedReplies returns how many MOVED replies n has sent (INFO errorstats).
func movedReplies(s *scenario, n *testcluster.Node) (int, error) {
	v, err := n.Do(s.ctx, "INFO", "errorstats")
	if err != nil {
		return 0, err
	}
	text, _ := v.(string)
	for l := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "errorstat_MOVED:count="); ok {
			return strconv.Atoi(rest)
		}
	}
	return 0, nil
}

// TestPortChange moves a master to another address: its proxy closes (the
// old address refuses connections) and the node announces a new proxy's
// port, so the topology's address of the master changes while its slots
// stay. Twice, on different shards; the second time while the clients are
// idle. Every slot must serve again within crashBound; no unit may be lost.
func TestPortChange(t *testing.T) {
	c, ps := needProxied(t)
	s := newScenarioOn(t, c, "port-change", true)
	for run := range runs {
		master := s.shards()[(run+2)%3].Master
		s.run(fault{
			name:      fmt.Sprintf("run %d: master %s moves to another port", run+1, master.Announced()),
			bound:     crashBound,
			idle:      run == 1,
			idleAfter: run == 0,
			inject: func() ([]string, error) {
				from, to, err := ps.move(s.ctx, master)
				return []string{fmt.Sprintf("%s moved from %s to %s", master.Addr, from, to)}, err
			},
		})
	}
}
