package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// The writes of Options.WaitReplicas are group-committed per master: WAIT
// acknowledges every write sent before it on its connection, so while a
// batch waits for the replicas, the next writes queue, and go together on
// one connection, followed by one WAIT. A master serves batchesInFlight
// batches at once, of up to maxBatch writes each.
const (
	maxBatch        = 256
	batchesInFlight = 2
)

// errStaleOwner marks a write that did not run because its node no longer
// serves the slot (or never answered for it); it goes the single-call way,
// which follows redirects.
var errStaleOwner = errors.New("redis: the slot's owner changed")

// write is one consume or refund waiting in a committer's queue.
type write struct {
	ctx        context.Context
	sl         uint16
	keys, args []string
	done       chan writeResult // buffered: the caller may have left
}

type writeResult struct {
	reply []int64
	err   error
}

// committer queues the writes of one master ("" outside a Cluster) and
// sends them in batches.
type committer struct {
	s        *Store
	addr     string
	inFlight chan struct{} // a token per batch on the wire

	mu      sync.Mutex
	queue   []*write
	running bool // a goroutine takes batches off queue
}

// commits holds a Store's committers, by master address, and the slot map
// that routes writes to them.
type commits struct {
	mu     sync.Mutex
	by     map[string]*committer
	owners []slotRange   // nil: to be asked for
	asking chan struct{} // closed when the slot map being asked for is in
	failed time.Time     // when asking last failed
}

// commit runs the script on the master of slot sl in the next
// batch of its committer, and returns when WAIT acknowledged it.
func (s *Store) commit(ctx context.Context, sl uint16, keys, args []string) ([]int64, error) {
	if err := s.dialsOff(sl); err != nil {
		return nil, err
	}
	addr, err := s.ownerOf(ctx, sl)
	if err != nil {
		return s.execAndWait(ctx, sl, keys, args)
	}
	w := &write{ctx: ctx, sl: sl, keys: keys, args: args, done: make(chan writeResult, 1)}
	s.committer(addr).add(w)
	select {
	case r := <-w.done:
		if errors.Is(r.err, errStaleOwner) {
			return s.execAndWait(ctx, sl, keys, args)
		}
		return r.reply, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ownerOf returns the address of the master that serves slot sl, from the
// slot map the committers last learned. While the map is asked for, the
// caller waits for it, or its deadline; when it could not be had, the call
// goes the single-call way.
func (s *Store) ownerOf(ctx context.Context, sl uint16) (string, error) {
	if !s.cluster {
		return "", nil
	}
	c := &s.commits
	for {
		c.mu.Lock()
		owners, asking := c.owners, c.asking
		if owners == nil && asking == nil {
			if s.now().Sub(c.failed) < lookupEvery {
				c.mu.Unlock()
				return "", errStaleOwner
			}
			asking = make(chan struct{})
			c.asking = asking
			go s.askOwners(asking)
		}
		c.mu.Unlock()
		if owners != nil {
			if addr := (slotMap{ranges: owners}).owner(sl); addr != "" {
				return addr, nil
			}
			return "", errStaleOwner
		}
		select {
		case <-asking:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// askOwners asks the nodes for the slot map (as the follower does: every
// node known, in parallel), keeps the first that covers every slot, and
// closes done.
func (s *Store) askOwners(done chan struct{}) {
	var owners []slotRange
	for a := range s.ask(s.c().Nodes(), "") {
		if _, all := a.owners(); all {
			owners = a.ranges
			break
		}
	}
	c := &s.commits
	c.mu.Lock()
	c.owners, c.asking = owners, nil
	if owners == nil {
		c.failed = s.now()
	}
	c.mu.Unlock()
	close(done)
}

// forgetOwners makes the next write ask for the slot map again.
func (s *Store) forgetOwners() {
	s.commits.mu.Lock()
	s.commits.owners = nil
	s.commits.mu.Unlock()
}

func (s *Store) committer(addr string) *committer {
	c := &s.commits
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.by[addr]
	if !ok {
		if c.by == nil {
			c.by = map[string]*committer{}
		}
		m = &committer{s: s, addr: addr, inFlight: make(chan struct{}, batchesInFlight)}
		c.by[addr] = m
	}
	return m
}

func (c *committer) add(w *write) {
	c.mu.Lock()
	c.queue = append(c.queue, w)
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if start {
		go c.run()
	}
}

// run sends the queue in batches until it is empty. It takes a batch only
// once a place on the wire is free, so that the writes that came meanwhile
// go with it.
func (c *committer) run() {
	for {
		c.inFlight <- struct{}{}
		c.mu.Lock()
		n := min(len(c.queue), maxBatch)
		if n == 0 {
			c.running = false
			c.queue = nil
			c.mu.Unlock()
			<-c.inFlight
			return
		}
		batch := make([]*write, n)
		copy(batch, c.queue)
		c.queue = c.queue[n:]
		c.mu.Unlock()
		go func() {
			defer func() { <-c.inFlight }()
			c.s.flush(c.addr, batch)
		}()
	}
}

// flush sends a batch and its WAIT on one connection, and answers each write.
func (s *Store) flush(addr string, batch []*write) {
	// A write whose caller left was never sent: failing it is exact.
	live := batch[:0]
	var last time.Duration // the longest any caller still waits
	for _, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.done <- writeResult{err: err}
			continue
		}
		left := time.Hour
		if d, ok := w.ctx.Deadline(); ok {
			left = time.Until(d)
		}
		last = max(last, left)
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	answer := func(err error) {
		for _, w := range live {
			w.done <- writeResult{err: err}
		}
	}
	cl := s.c()
	if s.cluster {
		var ok bool
		if cl, ok = cl.Nodes()[addr]; !ok {
			s.forgetOwners()
			answer(errStaleOwner)
			return
		}
	}
	// WAIT serves the caller who waits longest, leaving it a quarter of its
	// time for the scripts and the reply; the others leave at their deadline.
	waitMS := max(1, min(s.waitMS, last.Milliseconds()*3/4))
	// The connection's work may outlast the callers (see execAndWait).
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(waitMS)*time.Millisecond+s.options.ConnWriteTimeout)
	defer cancel()
	cmds := make(rueidis.Commands, 0, len(live)+1)
	for _, w := range live {
		cmds = append(cmds, checkCmd(cl.B(), false, w.keys, w.args))
	}
	res := cl.DoMulti(ctx, append(cmds, s.waitCmd(cl.B(), waitMS))...)
	// A node that never ran the script lacks it: those writes run as EVAL,
	// in a batch of their own, with a WAIT of their own.
	var again []*write
	for i, w := range live {
		if rerr, ok := rueidis.IsRedisErr(res[i].Error()); ok && rerr.IsNoScript() {
			again = append(again, w)
		}
	}
	s.answer(live, res, waitMS)
	if len(again) == 0 {
		return
	}
	cmds = cmds[:0]
	for _, w := range again {
		cmds = append(cmds, checkCmd(cl.B(), true, w.keys, w.args))
	}
	res = cl.DoMulti(ctx, append(cmds, s.waitCmd(cl.B(), waitMS))...)
	s.answer(again, res, waitMS)
}

// answer gives each write of a batch its reply: res holds the scripts'
// replies, then WAIT's. It skips the writes that found no script.
func (s *Store) answer(batch []*write, res []rueidis.RedisResult, waitMS int64) {
	n, waitErr := res[len(batch)].AsInt64()
	short, lost, stale := false, false, false
	for i, w := range batch {
		r := writeResult{err: res[i].Error()}
		rerr, isReply := rueidis.IsRedisErr(r.err)
		switch {
		case isReply && rerr.IsNoScript():
			continue
		case isReply && notRun(rerr):
			// Another node serves the slot now, or the cluster is
			// between owners: the script did not run.
			r.err = fmt.Errorf("%w: %w", errStaleOwner, r.err)
			stale = true
		case r.err != nil:
			lost = lost || !isReply
		case waitErr != nil:
			r.err = waitErr
			_, isReply = rueidis.IsRedisErr(waitErr)
			lost = lost || !isReply
		case n < s.waitN:
			r.err = fmt.Errorf("%w: %d of %d within %d ms", ErrNotReplicated, n, s.waitN, waitMS)
			short = true
		default:
			r.reply, r.err = res[i].AsIntSlice()
		}
		w.done <- r
	}
	if short {
		go s.checkReplicas(batch[0].sl)
	}
	if lost || stale {
		s.forgetOwners()
	}
	if lost {
		// The connection failed: the node may be gone, and its slots with it.
		go s.backOffDials(batch[0].sl)
	}
}

// notRun says whether a reply error means the script never ran on the
// node: it no longer serves the slot, is a replica now, or the cluster is
// not serving it at the moment.
func notRun(err *rueidis.RedisError) bool {
	if _, moved := err.IsMoved(); moved {
		return true
	}
	if _, ask := err.IsAsk(); ask {
		return true
	}
	return err.IsClusterDown() || err.IsTryAgain() || err.IsLoading() || strings.HasPrefix(err.Error(), "READONLY")
}
