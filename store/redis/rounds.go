package redis

// What starts a round of questions (see follow.go): a lost connection, the
// patrol, a failed attempt, and the first call after an idle time while a
// lost node is followed.

import (
	"context"
	"time"
)

// lostConn starts, unless one runs, a follower of the node at addr, whose
// connection was lost.
func (s *Store) lostConn(addr string) {
	if !s.cluster || s.client.Load() == nil || s.isClosed() {
		return // not a Cluster, still connecting, or closed
	}
	if _, running := s.follow.lost.LoadOrStore(addr, struct{}{}); running {
		return
	}
	go func() {
		defer s.follow.lost.Delete(addr)
		for end := time.Now().Add(followFor); time.Now().Before(end); {
			v, _ := s.locate(context.Background(), addr, false)
			if v.lostBack || v.stale || v.good != nil && !s.follow.lastHas(addr) {
				return // back, rebuilt or none of its slots to follow
			}
			select {
			case <-s.done:
				return
			case <-time.After(followEvery):
			}
		}
	}()
}

// patrol runs a round of questions every patrolEvery while no other round
// ran, until the store closes, and follows each master that did not
// answer as if its connection were lost: after a master went silent while
// the service was idle, the follower, not the first request, finds its
// replica promoted.
func (s *Store) patrol() {
	t := time.NewTicker(patrolEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		// Half: the last patrol's round ended a little less than a tick ago.
		if s.follow.busy(patrolEvery / 2) {
			continue
		}
		v, _ := s.locate(context.Background(), "", true)
		for _, addr := range v.silent {
			s.lostConn(addr)
		}
	}
}

// busy reports whether a round runs, or ended less than d ago.
func (f *follower) busy(d time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running != nil || time.Since(f.lastEnd) < d
}

func (f *follower) lastHas(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last[addr]
}

// served notes that a call was served at now.
func (f *follower) served(now time.Time) {
	if last := f.lastOK.Load(); now.UnixNano()-last > int64(servedEvery) {
		f.lastOK.Store(now.UnixNano())
	}
}

// idle reports whether no call was served for idleAfter: the topology may
// have changed meanwhile, unnoticed.
func (f *follower) idle(now time.Time) bool {
	return now.UnixNano()-f.lastOK.Load() > int64(idleAfter)
}

// catchUp runs before the first attempt of a call after an idle time,
// while a node whose connection was lost is followed: it runs a round of
// questions (or joins the one running), for at most half the call's time,
// so that a replica promoted since the follower last asked gets the call,
// not the lost node.
func (s *Store) catchUp(ctx context.Context) {
	var lost string
	s.follow.lost.Range(func(addr, _ any) bool {
		lost = addr.(string)
		return false
	})
	if lost == "" {
		return
	}
	wait := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/2))
		defer cancel()
	}
	s.locateUntil(wait, lost)
}

// locateUntil runs a round of questions (locate, paced) in the background
// and waits for it until ctx ends, not longer: a round that asks and
// rebuilds may take longer than a call may.
func (s *Store) locateUntil(ctx context.Context, lost string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.locate(context.WithoutCancel(ctx), lost, true)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// locateSoon starts a round in the background unless one runs or ran
// just now.
func (s *Store) locateSoon(lost string) {
	if !s.follow.busy(roundEvery) {
		go s.locate(context.Background(), lost, true)
	}
}

// relocate, after a failed attempt that is retried, runs a round of
// questions when the attempt did not reach its node, so that the retry
// goes to the rebuilt client if the slot moved. The caller waits for the
// round until its deadline.
func (s *Store) relocate(ctx context.Context, err error) {
	if lostNode(err) {
		s.locateUntil(ctx, refusedAddr(err))
	}
}
