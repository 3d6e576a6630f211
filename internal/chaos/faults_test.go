package chaos_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/store/redis"
)

// runs is how many times each scenario repeats its faults.
const runs = 2

// TestGracefulFailover fails over each master in turn with CLUSTER FAILOVER
// on its replica, twice. Every slot must serve again within gracefulBound,
// and no acknowledged unit may be lost. Half of the failovers happen while
// the clients are idle (recovery then counts from the resume); the others
// are followed by an idle period.
func TestGracefulFailover(t *testing.T) {
	s := newScenario(t, "graceful-failover", true)
	for run := range runs {
		for i := range 3 {
			sh := s.shards()[i]
			master, replica := sh.Master, sh.Replicas[0]
			idle := (run+i)%2 == 1
			s.run(fault{
				name:      fmt.Sprintf("run %d: CLUSTER FAILOVER on %s (master %s)", run+1, replica.Addr, master.Addr),
				bound:     gracefulBound,
				idle:      idle,
				idleAfter: !idle,
				prepare: func() error {
					d, err := s.c.FailoverDelay(s.ctx, replica)
					sleep(s.ctx, d)
					return err
				},
				inject: func() ([]string, error) { return nil, s.c.Failover(s.ctx, replica) },
			})
		}
	}
}

// TestKillMaster kills a master with SIGKILL and restarts it 10 s later, when
// it rejoins as a replica; twice, on different shards. Every slot must serve
// again within crashBound of the kill, and the restart must not disturb the
// clients. Units lost to the crash are reported, not asserted.
func TestKillMaster(t *testing.T) {
	killMasters(newScenario(t, "kill-master", false))
}

// TestKillMasterWaitReplica is TestKillMaster with consumes that wait for a
// replica (redis.Options.WaitReplicas), for the units a crash loses with and
// without it (reported in the accounting, not asserted).
func TestKillMasterWaitReplica(t *testing.T) {
	if os.Getenv("TOLLGATE_CHAOS_WAIT") == "" {
		t.Skip("a measurement (~30 s): TOLLGATE_CHAOS_WAIT=1 runs it")
	}
	c := needCluster(t)
	killMasters(newScenarioWith(t, c, "kill-master-wait", false, func(ctx context.Context) (*redis.Store, error) {
		return redis.New(ctx, redis.Options{Addrs: c.Addrs(), Cluster: true, WaitReplicas: 1, WaitTimeout: 100 * time.Millisecond})
	}))
}

// killMasters kills a master, restarts it 10 s later, twice.
func killMasters(s *scenario) {
	for run := range runs {
		sh := s.shards()[run%3]
		master := sh.Master
		s.run(fault{
			name:   fmt.Sprintf("run %d: kill -9 of master %s", run+1, master.Addr),
			bound:  crashBound,
			hold:   10 * time.Second,
			inject: func() ([]string, error) { return nil, master.Kill() },
		})
		s.run(fault{
			name:      fmt.Sprintf("run %d: restart of %s", run+1, master.Addr),
			bound:     gracefulBound,
			keep:      true,
			idleAfter: true,
			inject:    func() ([]string, error) { return nil, master.Restart(s.ctx) },
			healthy: func() error {
				if err := s.c.WaitHealthy(s.ctx); err != nil {
					return err
				}
				role, err := master.Role(s.ctx)
				if err == nil && role != testcluster.RoleReplica {
					err = fmt.Errorf("%s rejoined as %s, want replica", master.Addr, role)
				}
				return err
			},
		})
	}
}

// TestClientKill drops every client connection of every node with CLIENT
// KILL TYPE normal, twice: under load, then while the clients are idle.
func TestClientKill(t *testing.T) {
	s := newScenario(t, "client-kill", true)
	for run := range runs {
		s.run(fault{
			name:      fmt.Sprintf("run %d: CLIENT KILL TYPE normal on every node", run+1),
			bound:     gracefulBound,
			idle:      run == 1,
			idleAfter: run == 0,
			inject: func() ([]string, error) {
				var notes []string
				for _, n := range s.c.Nodes() {
					v, err := n.Do(s.ctx, "CLIENT", "KILL", "TYPE", "normal")
					if err != nil {
						return nil, fmt.Errorf("%s: %w", n.Addr, err)
					}
					notes = append(notes, fmt.Sprintf("%s: %v connections killed", n.Addr, v))
				}
				return notes, nil
			},
		})
	}
}

// TestSlotMigration migrates a slot in use (hot keys pinned to it) from one
// master to another, twice: half of its keys first, then 1.5 s of load while
// the source answers ASK for the moved keys, then the rest and the
// hand-over, after which the source answers MOVED. No call may fail for
// longer than gracefulBound and no unit may be lost.
func TestSlotMigration(t *testing.T) {
	s := newScenario(t, "slot-migration", true)
	for run := range runs {
		shards := s.shards()
		from, to := shards[run%3].Master, shards[(run+1)%3].Master
		slot := inside(shards[run%3], 100+run)
		s.run(fault{
			name:      fmt.Sprintf("run %d: migration of slot %d from %s to %s", run+1, slot, from.Addr, to.Addr),
			bound:     gracefulBound,
			pin:       []int{slot},
			idleAfter: true,
			inject:    func() ([]string, error) { return s.migrate(slot, from, to) },
		})
	}
}

// migrate moves slot from from to to in two halves, holding it
// half-migrated under load, and checks that the source answered ASK during
// and MOVED after.
func (s *scenario) migrate(slot int, from, to *testcluster.Node) ([]string, error) {
	ctx := s.ctx
	if err := s.c.BeginMigration(ctx, slot, from, to); err != nil {
		return nil, err
	}
	n, err := from.Do(ctx, "CLUSTER", "COUNTKEYSINSLOT", slot)
	if err != nil {
		return nil, err
	}
	keys, _ := n.(int64)
	half, err := s.c.MigrateKeys(ctx, slot, from, to, int(max(1, keys/2)))
	if err != nil {
		return nil, err
	}
	s.load.Mark("half-migrated", fmt.Sprintf("slot %d: %d of %d keys moved", slot, half, keys))
	notes := []string{fmt.Sprintf("slot %d held %d keys; %d moved first", slot, keys, half)}
	ask, err := s.redirect(slot, from)
	if err != nil {
		return nil, err
	}
	notes = append(notes, "half-migrated, the source answered "+ask)
	sleep(ctx, 1500*time.Millisecond)
	rest, err := s.c.MigrateKeys(ctx, slot, from, to, 0)
	if err != nil {
		return nil, err
	}
	if err := s.c.FinishMigration(ctx, slot, from, to); err != nil {
		return nil, err
	}
	s.load.Mark("migrated", fmt.Sprintf("slot %d: %d more keys moved", slot, rest))
	moved, err := s.redirect(slot, from)
	if err != nil {
		return nil, err
	}
	notes = append(notes, fmt.Sprintf("%d more keys moved; then the source answered %s", rest, moved))
	if ask[:3] != "ASK" || moved[:5] != "MOVED" {
		return notes, fmt.Errorf("slot %d: redirects %q during and %q after the migration, want ASK then MOVED", slot, ask, moved)
	}
	return notes, nil
}

// inside returns the slot offset slots into the shard's largest range of
// slots (earlier scenarios may have split its ranges), or that range's last
// slot if it is shorter.
func inside(sh testcluster.Shard, offset int) int {
	r := sh.Slots[0]
	for _, x := range sh.Slots {
		if x.Last-x.First > r.Last-r.First {
			r = x
		}
	}
	return min(r.First+offset, r.Last)
}

// redirect asks node for a key of slot that it does not hold and returns the
// redirect it answers, or a description of what it answered instead.
func (s *scenario) redirect(slot int, node *testcluster.Node) (string, error) {
	names := s.load.Keys(slot)
	if len(names) == 0 {
		return "", fmt.Errorf("no key in slot %d", slot)
	}
	var last string
	for _, name := range names {
		_, err := node.Do(s.ctx, "EXISTS", s.stores[0].Key(name, tollgate.SlidingLog))
		if kind, addr, ok := testcluster.IsRedirect(err); ok {
			return kind + " " + addr, nil
		}
		last = fmt.Sprintf("%v for %s", err, name)
	}
	return "no redirect (" + last + ")", nil
}

// TestReshard moves 400 slots (about 25 of them in use) from one master to
// another under load, slot by slot with their keys, and back again. No call
// may fail for longer than gracefulBound and no unit may be lost.
func TestReshard(t *testing.T) {
	s := newScenario(t, "reshard", true)
	shards := s.shards()
	owner, other := shards[0].Master, shards[1].Master
	first := inside(shards[0], 1000)
	var slots []int
	for i := range 400 {
		slots = append(slots, first+i)
	}
	for run := range runs {
		to := other
		if run%2 == 1 {
			to = owner
		}
		s.run(fault{
			name:      fmt.Sprintf("run %d: reshard of slots %d-%d to %s", run+1, slots[0], slots[len(slots)-1], to.Addr),
			bound:     gracefulBound,
			idleAfter: true,
			inject: func() ([]string, error) {
				begin := time.Now()
				err := s.c.MoveSlots(s.ctx, slots, to)
				return []string{fmt.Sprintf("%d slots moved in %v", len(slots), time.Since(begin).Round(time.Millisecond))}, err
			},
		})
	}
}
