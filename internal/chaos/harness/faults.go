package harness

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testcluster"
)

// Needs says what a scenario needs beyond a cluster it can send commands to.
type Needs uint8

const (
	// NeedsProcesses: the scenario kills and restarts nodes, so it runs
	// only on a cluster started here.
	NeedsProcesses Needs = 1 << iota
	// NeedsProxies: the scenario switches fault proxies between clients,
	// replicas and nodes, so it runs only on a cluster started behind them.
	NeedsProxies
)

// Def is a named scenario: its faults, each repeated runs times.
type Def struct {
	Name string
	// Doc says in one line what the scenario does.
	Doc string
	// Lossless: no fault may lose an acknowledged unit.
	Lossless bool
	Needs    Needs
	Run      func(s *Scenario, runs int) error
}

// Defs returns every scenario the command can run, in a fixed order.
func Defs() []Def {
	return []Def{
		{"graceful-failover", "CLUSTER FAILOVER of each master in turn (bound 2 s)", true, 0, GracefulFailover},
		{"kill-master", "kill -9 of a master, restart 10 s later (bound node timeout + 3 s)", false, NeedsProcesses, KillMasters},
		{"client-kill", "CLIENT KILL TYPE normal on every node (bound 2 s)", true, 0, ClientKill},
		{"slot-migration", "migration of a slot in use, held half-migrated (bound 2 s)", true, 0, SlotMigration},
		{"reshard", "400 slots moved to another master and back (bound 2 s)", true, 0, Reshard},
		{"black-hole", "a master partitioned away until its replica takes over, then healed (bound node timeout + 3 s)", false, NeedsProxies, BlackHole},
		{"stuck-moved", "connections that answer MOVED to their own address (bound 10 s)", true, NeedsProxies, StuckMoved},
		{"port-change", "a master moves to another port (bound node timeout + 3 s)", true, NeedsProxies, PortChange},
		{"address-move", "every node moves to a new address in turn, under load, until no seed is alive; then idle, then kill -9 of a master while idle (no call may fail)", true, NeedsProxies | NeedsProcesses, AddressMove},
		{"idle-failover", "CLUSTER FAILOVER of each master while idle; then a sweep of all slots (no call may fail)", true, 0, IdleFailover},
		{"idle-kill", "kill -9 of a master while idle, then its restart; a sweep of all slots after each (no call may fail)", false, NeedsProcesses, IdleKill},
		{"idle-black-hole", "a master partitioned away while idle, then healed; a sweep of all slots after each (no call may fail)", false, NeedsProxies, IdleBlackHole},
	}
}

// FindDef returns the scenario named name.
func FindDef(name string) (Def, bool) {
	for _, d := range Defs() {
		if d.Name == name {
			return d, true
		}
	}
	return Def{}, false
}

// shard returns shard i of the cluster's shards.
func (s *Scenario) shard(i int) (testcluster.Shard, error) {
	shards, err := s.Shards()
	if err != nil {
		return testcluster.Shard{}, err
	}
	if i >= len(shards) {
		return testcluster.Shard{}, fmt.Errorf("shard %d of %d", i, len(shards))
	}
	return shards[i], nil
}

// GracefulFailover fails over each master in turn with CLUSTER FAILOVER on
// its replica, runs times. Every slot must serve again within
// GracefulBound, and no acknowledged unit may be lost. Half of the
// failovers happen while the clients are idle (recovery then counts from
// the resume); the others are followed by an idle period.
func GracefulFailover(s *Scenario, runs int) error {
	for run := range runs {
		for i := range 3 {
			sh, err := s.shard(i)
			if err != nil {
				return err
			}
			if len(sh.Replicas) == 0 {
				return fmt.Errorf("master %s has no replica", sh.Master.Addr)
			}
			name := fmt.Sprintf("run %d: CLUSTER FAILOVER on %s (master %s)", run+1, sh.Replicas[0].Addr, sh.Master.Addr)
			if err := Failover(s, sh, name, (run+i)%2 == 1); err != nil {
				return err
			}
		}
	}
	return nil
}

// Failover runs one graceful failover of sh (CLUSTER FAILOVER on its first
// replica, after the spacing Redis needs between failovers of one shard),
// named name, while the clients are idle or followed by an idle period.
func Failover(s *Scenario, sh testcluster.Shard, name string, idle bool) error {
	if len(sh.Replicas) == 0 {
		return fmt.Errorf("%s: master %s has no replica", name, sh.Master.Addr)
	}
	replica := sh.Replicas[0]
	_, err := s.Run(Fault{
		Name:      name,
		Bound:     GracefulBound,
		Idle:      idle,
		IdleAfter: !idle,
		Prepare: func() error {
			d, err := s.c.FailoverDelay(s.ctx, replica)
			Sleep(s.ctx, d)
			return err
		},
		Inject: func() ([]string, error) { return nil, s.c.Failover(s.ctx, replica) },
	})
	return err
}

// KillMasters kills a master with SIGKILL and restarts it 10 s later, when
// it rejoins as a replica; runs times, on different shards. Every slot must
// serve again within CrashBound of the kill, and the restart must not
// disturb the clients. Units lost to the crash are reported, not asserted.
func KillMasters(s *Scenario, runs int) error {
	for run := range runs {
		sh, err := s.shard(run % 3)
		if err != nil {
			return err
		}
		master := sh.Master
		if _, err := s.Run(Fault{
			Name:   fmt.Sprintf("run %d: kill -9 of master %s", run+1, master.Addr),
			Bound:  CrashBound,
			Hold:   10 * time.Second,
			Inject: func() ([]string, error) { return nil, master.Kill() },
		}); err != nil {
			return err
		}
		if _, err := s.Run(Fault{
			Name:      fmt.Sprintf("run %d: restart of %s", run+1, master.Addr),
			Bound:     GracefulBound,
			Keep:      true,
			IdleAfter: true,
			Inject:    func() ([]string, error) { return nil, master.Restart(s.ctx) },
			Healthy: func() error {
				if err := s.c.WaitHealthy(s.ctx); err != nil {
					return err
				}
				role, err := master.Role(s.ctx)
				if err == nil && role != testcluster.RoleReplica {
					err = fmt.Errorf("%s rejoined as %s, want replica", master.Addr, role)
				}
				return err
			},
		}); err != nil {
			return err
		}
	}
	return nil
}

// ClientKill drops every client connection of every node with CLIENT KILL
// TYPE normal, runs times: under load, then while the clients are idle,
// and so on.
func ClientKill(s *Scenario, runs int) error {
	for run := range runs {
		if _, err := s.Run(Fault{
			Name:      fmt.Sprintf("run %d: CLIENT KILL TYPE normal on every node", run+1),
			Bound:     GracefulBound,
			Idle:      run%2 == 1,
			IdleAfter: run%2 == 0,
			Inject: func() ([]string, error) {
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
		}); err != nil {
			return err
		}
	}
	return nil
}

// SlotMigration migrates a slot in use (hot keys pinned to it) from one
// master to another, runs times: half of its keys first, then 1.5 s of load
// while the source answers ASK for the moved keys, then the rest and the
// hand-over, after which the source answers MOVED. No call may fail for
// longer than GracefulBound and no unit may be lost.
func SlotMigration(s *Scenario, runs int) error {
	for run := range runs {
		shards, err := s.Shards()
		if err != nil {
			return err
		}
		from, to := shards[run%3].Master, shards[(run+1)%3].Master
		slot := inside(shards[run%3], 100+run)
		if _, err := s.Run(Fault{
			Name:      fmt.Sprintf("run %d: migration of slot %d from %s to %s", run+1, slot, from.Addr, to.Addr),
			Bound:     GracefulBound,
			Pin:       []int{slot},
			IdleAfter: true,
			Inject:    func() ([]string, error) { return s.migrate(slot, from, to) },
		}); err != nil {
			return err
		}
	}
	return nil
}

// migrate moves slot from from to to in two halves, holding it
// half-migrated under load, and checks that the source answered ASK during
// and MOVED after.
func (s *Scenario) migrate(slot int, from, to *testcluster.Node) ([]string, error) {
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
	Sleep(ctx, 1500*time.Millisecond)
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
	if !strings.HasPrefix(ask, "ASK") || !strings.HasPrefix(moved, "MOVED") {
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
func (s *Scenario) redirect(slot int, node *testcluster.Node) (string, error) {
	names := s.load.Keys(slot)
	if len(names) == 0 {
		return "", fmt.Errorf("no key in slot %d", slot)
	}
	var last string
	for _, name := range names {
		_, err := node.Do(s.ctx, "EXISTS", s.stores[0].Key(tollgate.StoreKey("", name)))
		if kind, addr, ok := testcluster.IsRedirect(err); ok {
			return kind + " " + addr, nil
		}
		last = fmt.Sprintf("%v for %s", err, name)
	}
	return "no redirect (" + last + ")", nil
}

// Reshard moves 400 slots (about 25 of them in use) from one master to
// another under load, slot by slot with their keys, and back again, runs
// moves in all. No call may fail for longer than GracefulBound and no unit
// may be lost.
func Reshard(s *Scenario, runs int) error {
	shards, err := s.Shards()
	if err != nil {
		return err
	}
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
		if _, err := s.Run(Fault{
			Name:      fmt.Sprintf("run %d: reshard of slots %d-%d to %s", run+1, slots[0], slots[len(slots)-1], to.Addr),
			Bound:     GracefulBound,
			IdleAfter: true,
			Inject: func() ([]string, error) {
				begin := time.Now()
				err := s.c.MoveSlots(s.ctx, slots, to)
				return []string{fmt.Sprintf("%d slots moved in %v", len(slots), time.Since(begin).Round(time.Millisecond))}, err
			},
		}); err != nil {
			return err
		}
	}
	return nil
}

// errNoProxies is returned by the scenarios that need fault proxies on a
// cluster without them.
var errNoProxies = errors.New("this scenario needs a cluster behind fault proxies")

// BlackHole partitions a master away (its proxies hold every byte, and the
// other nodes' proxies hold what it sends), so that calls to it time out
// instead of failing fast, until its replica takes over; then heals the
// partition, when the old master rejoins as a replica. runs times, on
// different shards. Every slot must serve again within CrashBound of the
// partition; on every second run the clients are idle from the moment the
// replica has taken over until IdleFor later, and must then serve within
// GracefulBound. Units lost are reported, not asserted: replication to the
// replica is cut at the same instant.
func BlackHole(s *Scenario, runs int) error {
	ps := s.Proxies()
	if ps == nil {
		return errNoProxies
	}
	for run := range runs {
		sh, err := s.shard(run % 3)
		if err != nil {
			return err
		}
		master, replica := sh.Master, sh.Replicas[0]
		bound := CrashBound
		if run%2 == 1 {
			// Counted from the resume, when the cluster has long been ok.
			bound = GracefulBound
		}
		if _, err := s.Run(Fault{
			Name:       fmt.Sprintf("run %d: black hole around master %s", run+1, master.Announced()),
			Bound:      bound,
			PauseAfter: run%2 == 1,
			Inject:     func() ([]string, error) { ps.Partition(master); return nil, nil },
			Healthy:    func() error { return WaitPromoted(s.ctx, s.c, replica, master) },
		}); err != nil {
			return err
		}
		if _, err := s.Run(Fault{
			Name:      fmt.Sprintf("run %d: partition of %s healed", run+1, master.Announced()),
			Bound:     GracefulBound,
			Keep:      true,
			IdleAfter: true,
			Inject:    func() ([]string, error) { ps.Heal(master); return nil, nil },
		}); err != nil {
			return err
		}
	}
	return nil
}

// StuckMoved recreates the seed's stuck state: connections to a master that
// answer MOVED for its own slots, pointing back at the same address,
// although the topology (CLUSTER SLOTS from any node) says that address owns
// them. The master's proxy sends new connections to another master while
// the master drops its clients (CLIENT KILL), so the clients re-dial into
// the wrong node; then it sends new connections to the right node again.
// Only a client that drops such a connection and dials again heals. runs
// times; on every second run the clients are idle once the stuck
// connections exist. No slot may keep failing for StuckAfter.
func StuckMoved(s *Scenario, runs int) error {
	ps := s.Proxies()
	if ps == nil {
		return errNoProxies
	}
	for run := range runs {
		shards, err := s.Shards()
		if err != nil {
			return err
		}
		a, b := shards[run%3].Master, shards[(run+1)%3].Master
		if _, err := s.Run(Fault{
			Name:       fmt.Sprintf("run %d: connections to %s land on %s", run+1, a.Announced(), b.Announced()),
			Bound:      StuckAfter,
			PauseAfter: run%2 == 1,
			IdleAfter:  run%2 == 0,
			Inject:     func() ([]string, error) { return s.misroute(ps, a, b) },
		}); err != nil {
			return err
		}
	}
	return nil
}

// misroute makes the clients' connections to a's address reach b, and
// checks that b answered MOVED on them.
func (s *Scenario) misroute(ps *Proxies, a, b *testcluster.Node) ([]string, error) {
	p, _ := ps.Of(a)
	moved0, err := movedReplies(s.ctx, b)
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
	for p.Conns()[b.Addr] < Clients && time.Now().Before(deadline) {
		Sleep(s.ctx, 10*time.Millisecond)
	}
	p.SetBackend(a.Addr)
	restored = true
	conns := p.Conns()
	Sleep(s.ctx, 200*time.Millisecond)
	moved, err := movedReplies(s.ctx, b)
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
func movedReplies(ctx context.Context, n *testcluster.Node) (int, error) {
	v, err := n.Do(ctx, "INFO", "errorstats")
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

// PortChange moves a master to another address: its proxy closes (the old
// address refuses connections) and the node announces a new proxy's port,
// so the topology's address of the master changes while its slots stay.
// runs times, on different shards; every second time while the clients are
// idle. Every slot must serve again within CrashBound; no unit may be lost.
func PortChange(s *Scenario, runs int) error {
	ps := s.Proxies()
	if ps == nil {
		return errNoProxies
	}
	for run := range runs {
		sh, err := s.shard((run + 2) % 3)
		if err != nil {
			return err
		}
		master := sh.Master
		if _, err := s.Run(Fault{
			Name:      fmt.Sprintf("run %d: master %s moves to another port", run+1, master.Announced()),
			Bound:     CrashBound,
			Idle:      run%2 == 1,
			IdleAfter: run%2 == 0,
			Inject: func() ([]string, error) {
				from, to, err := ps.Move(s.ctx, master)
				return []string{fmt.Sprintf("%s moved from %s to %s", master.Addr, from, to)}, err
			},
		}); err != nil {
			return err
		}
	}
	return nil
}
