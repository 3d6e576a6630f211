package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// ErrNotReplicated means that fewer replicas than Options.WaitReplicas
// confirmed a write within Options.WaitTimeout: the master applied it, and
// a failover may lose it.
var ErrNotReplicated = errors.New("redis: the write reached fewer replicas than WaitReplicas")

// execAndWait runs the script and WAIT on one connection, so that WAIT
// counts the replicas that have this script's write. It is the way of the
// writes the group commit (commit) cannot route: their slot moved, or the
// slot map is not known.
//
// The connections come from rueidis's pool of dedicated connections, which
// dials a new one whenever none is free; and one whose call outlives its
// deadline is closed. Unbounded, a burst of calls would dial hundreds of
// connections at once, time out while dialing, and go on so for good. So
// at most MaxWaiting calls wait at once, WAIT ends before the call's
// deadline, and the connection is not held to that deadline.
//
// Every dial of a dedicated connection is costly (rueidis gives each one
// its full buffers), and calls to a master that is down would dial one
// each: after a connection error, the calls of all that master's slots
// fail fast for dialBackoff.
func (s *Store) execAndWait(ctx context.Context, sl uint16, keys, args []string) ([]int64, error) {
	if err := s.dialsOff(sl); err != nil {
		return nil, err
	}
	select {
	case s.waiting <- struct{}{}:
		defer func() { <-s.waiting }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	waitMS := s.waitMS
	if d, ok := ctx.Deadline(); ok {
		// Leave the script and the reply a quarter of the time left.
		waitMS = min(waitMS, time.Until(d).Milliseconds()*3/4)
		if waitMS < 1 {
			return nil, context.DeadlineExceeded
		}
	}
	// The connection's work may outlast the caller, who leaves at its
	// deadline (see bounded): rueidis closes a dedicated connection whose
	// call is cut short, and under load, dialing them again and again costs
	// more than letting WAIT end by itself.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(waitMS)*time.Millisecond+s.options.ConnWriteTimeout)
	defer cancel()
	var reply []int64
	err := s.c().Dedicated(func(dc rueidis.DedicatedClient) error {
		res := dc.DoMulti(ctx, checkCmd(dc.B(), false, keys, args), s.waitCmd(dc.B(), waitMS))
		if rerr, ok := rueidis.IsRedisErr(res[0].Error()); ok && rerr.IsNoScript() {
			res = dc.DoMulti(ctx, checkCmd(dc.B(), true, keys, args), s.waitCmd(dc.B(), waitMS))
		}
		var err error
		if reply, err = res[0].AsIntSlice(); err != nil {
			return err
		}
		n, err := res[1].AsInt64()
		if err != nil {
			return err
		}
		if n < s.waitN {
			go s.checkReplicas(sl)
			return fmt.Errorf("%w: %d of %d within %d ms", ErrNotReplicated, n, s.waitN, waitMS)
		}
		return nil
	})
	if _, reply := rueidis.IsRedisErr(err); err != nil && !reply && ctx.Err() == nil && !errors.Is(err, ErrNotReplicated) {
		go s.backOffDials(sl)
	}
	return reply, err
}

// checkCmd builds the call of check.lua on keys and args: EVALSHA, or with
// text, EVAL, for a node that does not have the script yet.
func checkCmd(b rueidis.Builder, text bool, keys, args []string) rueidis.Completed {
	if text {
		return b.Eval().Script(checkLua).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
	}
	return b.Evalsha().Sha1(checkSHA).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// waitCmd builds the WAIT that follows a waiting call's writes.
func (s *Store) waitCmd(b rueidis.Builder, waitMS int64) rueidis.Completed {
	return b.Wait().Numreplicas(s.waitN).Timeout(waitMS).Build()
}

// dialsOff returns ErrCircuitOpen while the calls of sl's master fail fast
// (backOffDials), nil otherwise.
func (s *Store) dialsOff(sl uint16) error {
	if s.now().UnixNano() < s.dialOff[sl].Load() {
		return fmt.Errorf("%w: its master refused a connection just now", ErrCircuitOpen)
	}
	return nil
}

// backOffDials makes the calls of all the slots of sl's master fail fast
// for dialBackoff.
func (s *Store) backOffDials(sl uint16) {
	until := s.now().Add(dialBackoff).UnixNano()
	s.dialOff[sl].Store(until)
	if !s.lookups.allow(s.now()) {
		return
	}
	_, slots, err := s.masterOf(sl)
	if err != nil {
		return
	}
	for _, sl := range slots {
		s.dialOff[sl].Store(until)
	}
}

// checkReplicas counts the replicas connected to the master of slot sl.
// While they are fewer than WaitReplicas, the calls of all its slots do
// not wait: there is nothing to wait for (its replica died, or was
// promoted and the old master is not back yet), and each call would fail
// after the full timeout. It counts again every replicaCheckEvery until
// they are back; one count per master runs at a time.
func (s *Store) checkReplicas(sl uint16) {
	// Many calls come short at once; the first counts, the others' slots
	// are counted by their next short call if need be.
	if !s.lookups.allow(s.now()) {
		return
	}
	master, slots, err := s.masterOf(sl)
	if err != nil {
		return
	}
	if _, running := s.checking.LoadOrStore(master, true); running {
		return
	}
	defer s.checking.Delete(master)
	// Whatever ends the count, its slots are waited for again: none may
	// stay unprotected once nobody counts.
	defer func() { s.setWaitOff(slots, false) }()
	for {
		n, err := s.connectedReplicas(master)
		if err != nil || n >= s.waitN {
			return
		}
		s.setWaitOff(slots, true)
		select {
		case <-s.done:
			return
		case <-time.After(replicaCheckEvery):
		}
		// The master may have lost slots meanwhile (resharding, failover).
		prev := slots
		if master, slots, err = s.masterOf(sl); err != nil {
			slots = prev
			return
		}
		s.setWaitOff(prev, false)
	}
}

func (s *Store) setWaitOff(slots []uint16, off bool) {
	for _, sl := range slots {
		s.waitOff[sl].Store(off)
	}
}

// masterOf returns the address of the master that serves sl and all its
// slots ("" and slot 0 outside a Cluster).
func (s *Store) masterOf(sl uint16) (string, []uint16, error) {
	if !s.cluster {
		return "", []uint16{0}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	ranges, err := askSlots(ctx, s.c())
	if err != nil {
		return "", nil, err
	}
	master := slotMap{ranges: ranges}.owner(sl)
	var slots []uint16
	for _, r := range ranges {
		if r.owner == master {
			for i := int(r.first); i <= int(r.last); i++ {
				slots = append(slots, uint16(i))
			}
		}
	}
	return master, slots, nil
}

// connectedReplicas asks master (any node outside a Cluster) how many
// replicas are connected to it.
func (s *Store) connectedReplicas(master string) (int64, error) {
	c := s.c()
	if s.cluster {
		var ok bool
		if c, ok = c.Nodes()[master]; !ok {
			return 0, fmt.Errorf("redis: %s is not a known node", master)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	info, err := c.Do(ctx, c.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("redis: INFO replication of %s has no connected_slaves", master)
}

// pacer lets one event through per lookupEvery.
type pacer struct{ next atomic.Int64 }

func (p *pacer) allow(now time.Time) bool {
	next := p.next.Load()
	return now.UnixNano() >= next && p.next.CompareAndSwap(next, now.Add(lookupEvery).UnixNano())
}
