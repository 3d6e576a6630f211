package testcluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Slot migration, the way redis-cli --cluster reshard does it (see
// shared/notes/local-cluster.md): the target marks the slot IMPORTING, the
// source MIGRATING; MIGRATE moves the keys in small batches; SETSLOT NODE on
// both ends, then on the other masters, hands the slot over. In between, the
// source answers ASK for keys it no longer has, the target answers MOVED
// unless ASKING precedes, and a multi-key command whose keys are split
// answers TRYAGAIN. The steps are separate calls so that a test can hold the
// slot half-migrated, under load, as long as it likes.

// migrateBatch is how many keys one MIGRATE moves; redis-cli's default
// pipeline is 10. Batches ignore hash tags, so two keys of one tag may move
// in different batches, as with redis-cli.
const migrateBatch = 10

// migrateTimeout is MIGRATE's own timeout in milliseconds.
const migrateTimeout = 5000

// SlotOwner returns the master that owns slot, as the first running node
// sees it.
func (c *Cluster) SlotOwner(ctx context.Context, slot int) (*Node, error) {
	if slot < 0 || slot >= slotCount {
		return nil, fmt.Errorf("testcluster: slot %d out of range", slot)
	}
	shards, err := c.Shards(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range shards {
		for _, r := range s.Slots {
			if r.First <= slot && slot <= r.Last {
				return s.Master, nil
			}
		}
	}
	return nil, fmt.Errorf("testcluster: no master owns slot %d", slot)
}

// BeginMigration marks slot IMPORTING on to and MIGRATING on from, the
// master that owns it. Keys stay on from until MigrateKeys moves them.
func (c *Cluster) BeginMigration(ctx context.Context, slot int, from, to *Node) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	if from == to {
		return fmt.Errorf("testcluster: migration of slot %d from %s to itself", slot, from.Addr)
	}
	if _, err := to.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", from.ID); err != nil {
		return &nodeError{to, fmt.Errorf("SETSLOT %d IMPORTING: %w", slot, err)}
	}
	if _, err := from.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", to.ID); err != nil {
		return &nodeError{from, fmt.Errorf("SETSLOT %d MIGRATING: %w", slot, err)}
	}
	return nil
}

// MigrateKeys moves up to limit keys of slot (all when limit is 0) from from
// to to, in batches of migrateBatch, and returns how many it moved. The slot
// must be migrating (BeginMigration). Keys written on from meanwhile are
// moved too when limit is 0: it repeats until from has none left.
func (c *Cluster) MigrateKeys(ctx context.Context, slot int, from, to *Node, limit int) (int, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	moved := 0
	for limit == 0 || moved < limit {
		want := migrateBatch
		if limit > 0 {
			want = min(want, limit-moved)
		}
		v, err := from.Do(ctx, "CLUSTER", "GETKEYSINSLOT", slot, want)
		if err != nil {
			return moved, &nodeError{from, fmt.Errorf("GETKEYSINSLOT %d: %w", slot, err)}
		}
		arr, _ := v.([]any)
		if len(arr) == 0 {
			return moved, nil
		}
		args := []any{"MIGRATE", to.Host, to.Port, "", 0, migrateTimeout, "KEYS"}
		for _, k := range arr {
			s, ok := k.(string)
			if !ok {
				return moved, errorAt(from, "GETKEYSINSLOT %d: key is %T", slot, k)
			}
			args = append(args, s)
		}
		if _, err := from.Do(ctx, args...); err != nil {
			return moved, &nodeError{from, fmt.Errorf("MIGRATE to %s: %w", to.Addr, err)}
		}
		moved += len(arr)
	}
	return moved, nil
}

// FinishMigration assigns slot to to: SETSLOT NODE on to, then on from, then
// on every other running master, so that the cluster agrees at once instead
// of by gossip. from must hold no key of the slot any more.
func (c *Cluster) FinishMigration(ctx context.Context, slot int, from, to *Node) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	order := []*Node{to, from}
	masters, err := c.Masters(ctx)
	if err != nil {
		return err
	}
	for _, m := range masters {
		if !slices.Contains(order, m) && m.Running() {
			order = append(order, m)
		}
	}
	for _, n := range order {
		if _, err := n.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", to.ID); err != nil {
			return &nodeError{n, fmt.Errorf("SETSLOT %d NODE %s: %w", slot, to.Addr, err)}
		}
	}
	return nil
}

// MoveSlots migrates every slot in slots to the master to, one slot at a
// time with all its keys, from whichever master owns it. Slots to already
// owns are skipped. It returns once every slot is assigned; WaitHealthy then
// waits for replicas to agree.
func (c *Cluster) MoveSlots(ctx context.Context, slots []int, to *Node) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	shards, err := c.Shards(ctx)
	if err != nil {
		return err
	}
	owner := func(slot int) *Node {
		for _, s := range shards {
			for _, r := range s.Slots {
				if r.First <= slot && slot <= r.Last {
					return s.Master
				}
			}
		}
		return nil
	}
	for _, slot := range slots {
		from := owner(slot)
		switch {
		case from == nil:
			return fmt.Errorf("testcluster: no master owns slot %d", slot)
		case from == to:
			continue
		}
		if err := c.BeginMigration(ctx, slot, from, to); err != nil {
			return withLog(err)
		}
		if _, err := c.MigrateKeys(ctx, slot, from, to, 0); err != nil {
			return withLog(err)
		}
		if err := c.FinishMigration(ctx, slot, from, to); err != nil {
			return withLog(err)
		}
	}
	return nil
}

// IsRedirect reports whether err is a MOVED or ASK reply and returns its
// kind ("MOVED" or "ASK") and target address.
func IsRedirect(err error) (kind, addr string, ok bool) {
	var re ReplyError
	if !errors.As(err, &re) {
		return "", "", false
	}
	f := strings.Fields(string(re))
	if len(f) != 3 || (f[0] != "MOVED" && f[0] != "ASK") {
		return "", "", false
	}
	return f[0], f[2], true
}
