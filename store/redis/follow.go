package redis

// Following the topology without traffic. rueidis reloads its slot map on a
// redirect, and after a lost connection once, after a random delay of up to
// a second: after a crash that reload comes before the replica's promotion,
// and a service that then sleeps learns of the promotion only from the
// first requests that fail. After a node moved to another address, the
// client keeps dialing the old one. So the store follows by itself:
//
//   - when a connection is lost (closed by the node, or torn down after it
//     stopped answering), it asks every node it knows, every followEvery,
//     for the slot map, until every slot of the lost node is served by a
//     master that answers, and then rebuilds its client from those masters;
//   - when a call fails on its way to a node (refused, reset, timed out),
//     it asks at once, within the call's deadline, and rebuilds before the
//     retry when the answers show that the client's map is stale: a master
//     at an address the client does not know, or a lost node's slots
//     served by another master.
//
// The nodes it asks are the last known topology (the client's nodes), the
// masters the answers named, then the seeds (Options.Addrs, resolved again).

import (
	"context"
	"errors"
	"iter"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

const (
	// followEvery paces a follower's questions; followFor bounds its life.
	followEvery = 100 * time.Millisecond
	followFor   = 30 * time.Second
	// followAsk bounds one round of questions: a node that holds them up
	// (dead, black-holed) delays no answer from the others.
	followAsk = 250 * time.Millisecond
	// roundEvery is the least time between two rounds asked for by failing
	// calls.
	roundEvery = 50 * time.Millisecond
)

// answer is one node's slot map, as CLUSTER SLOTS gives it.
type answer struct {
	node   string
	ranges []slotRange
}

// owners returns the masters of a and whether they cover every slot.
func (a answer) owners() (map[string]bool, bool) {
	owners := map[string]bool{}
	n := 0
	for _, r := range a.ranges {
		owners[r.owner] = true
		n += int(r.last) - int(r.first) + 1
	}
	return owners, n == 16384
}

// verdict is what one round of answers says.
type verdict struct {
	// good is a complete map that does not name the lost node as a master
	// and whose masters all answered (or are new to the client: the
	// rebuild dials them); nil when there is none.
	good map[string]bool
	// stale: good shows that the client's map is out of date.
	stale bool
	// lostBack: the lost node answered.
	lostBack bool
}

// judge reads a round of answers. lost is the address of a node whose
// connection was lost or refused ("" for none); known, the nodes the client
// knows; last, the masters of the last complete map seen.
func judge(answers []answer, lost string, known, last map[string]bool) verdict {
	var v verdict
	responsive := map[string]bool{}
	for _, a := range answers {
		responsive[a.node] = true
	}
	v.lostBack = lost != "" && responsive[lost]
	// A master's own answer first: it knows its slots before the others.
	slices.SortStableFunc(answers, func(a, b answer) int {
		ao, _ := a.owners()
		bo, _ := b.owners()
		switch {
		case ao[a.node] && !bo[b.node]:
			return -1
		case !ao[a.node] && bo[b.node]:
			return 1
		}
		return 0
	})
	for _, a := range answers {
		owners, full := a.owners()
		if !full || owners[lost] {
			continue
		}
		ok := true
		for o := range owners {
			if known[o] && !responsive[o] {
				ok = false // a known master that did not answer: maybe dead
			}
		}
		if !ok {
			continue
		}
		v.good = owners
		for o := range owners {
			if !known[o] {
				v.stale = true // a master the client cannot reach
			}
		}
		if lost != "" && last[lost] {
			v.stale = true // the lost master's slots moved on
		}
		return v
	}
	return v
}

// follower holds the state of following: rounds run one at a time, and the
// callers that ask for one while it runs share its result.
type follower struct {
	mu      sync.Mutex
	running *round
	lastEnd time.Time
	last    map[string]bool // masters of the last complete map seen
	lost    sync.Map        // address → struct{}: a follower runs for it
}

type round struct {
	done  chan struct{}
	lost  string
	fixed bool // the round rebuilt the client
}

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

func (f *follower) lastHas(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last[addr]
}

// locate runs a round of questions (or joins the one running) and
// rebuilds the client when the answers show that its map is stale. With
// paced, a round that ended less than roundEvery ago is not repeated. It
// returns the round's verdict and whether the client was rebuilt.
func (s *Store) locate(ctx context.Context, lost string, paced bool) (verdict, bool) {
	f := &s.follow
	f.mu.Lock()
	if r := f.running; r != nil {
		f.mu.Unlock()
		select {
		case <-r.done:
			return verdict{}, r.fixed
		case <-ctx.Done():
			return verdict{}, false
		}
	}
	if paced && time.Since(f.lastEnd) < roundEvery {
		f.mu.Unlock()
		return verdict{}, false
	}
	r := &round{done: make(chan struct{}), lost: lost}
	f.running = r
	f.mu.Unlock()

	nodes := s.c().Nodes()
	known := map[string]bool{}
	for addr := range nodes {
		known[addr] = true
	}
	f.mu.Lock()
	last := f.last
	f.mu.Unlock()
	var v verdict
	var answers []answer
	for a := range s.ask(nodes, lost) {
		answers = append(answers, a)
		if v = judge(slices.Clone(answers), lost, known, last); v.stale {
			break // no need to wait for the silent ones
		}
	}
	f.mu.Lock()
	switch {
	case v.good != nil:
		f.last = v.good
	case f.last == nil:
		for _, a := range answers { // the client's map, most likely
			if owners, full := a.owners(); full {
				f.last = owners
				break
			}
		}
	}
	f.mu.Unlock()
	if v.stale {
		var from []string
		for o := range v.good {
			from = append(from, o)
		}
		r.fixed = s.rebuild("topology_changed", 0, "", 0, from...)
	}
	f.mu.Lock()
	f.running, f.lastEnd = nil, time.Now()
	f.mu.Unlock()
	close(r.done)
	return v, r.fixed
}

// ask asks for the slot map, in parallel and for followAsk at most, every
// node the client knows, the lost one and the masters the last map named;
// only when none of them answers, the seeds. It yields the answers as they
// come.
func (s *Store) ask(nodes map[string]rueidis.Client, lost string) iter.Seq[answer] {
	return func(yield func(answer) bool) {
		ctx, cancel := context.WithTimeout(context.Background(), followAsk)
		defer cancel()
		addrs := map[string]bool{lost: lost != ""}
		s.follow.mu.Lock()
		for o := range s.follow.last {
			addrs[o] = true
		}
		s.follow.mu.Unlock()
		for a := range nodes {
			addrs[a] = true
		}
		answered, more := s.askEach(ctx, nodes, addrs, yield)
		if answered || !more {
			return
		}
		seeds := map[string]bool{}
		for _, a := range s.options.InitAddress {
			seeds[a] = !addrs[a]
		}
		s.askEach(ctx, nodes, seeds, yield)
	}
}

// askEach asks the addrs that are true, and reports whether any answered
// and whether yield wants more.
func (s *Store) askEach(ctx context.Context, nodes map[string]rueidis.Client, addrs map[string]bool, yield func(answer) bool) (answered, more bool) {
	out := make(chan answer, len(addrs))
	n := 0
	for addr, want := range addrs {
		if !want {
			continue
		}
		n++
		go func() {
			cl, ok := nodes[addr]
			if !ok { // a node the client does not know: dial it alone
				o := s.options
				o.InitAddress, o.ForceSingleClient = []string{addr}, true
				o.ClusterOption = rueidis.ClusterOption{}
				o.Dialer.Timeout = followAsk
				// One small question: small buffers, not 0.5 MiB each.
				o.ReadBufferEachConn, o.WriteBufferEachConn, o.RingScaleEachConn = 1<<13, 1<<13, 4
				var err error
				if cl, err = rueidis.NewClient(o); err != nil {
					out <- answer{}
					return
				}
				defer cl.Close()
			}
			ranges, err := askSlots(ctx, cl)
			if err != nil {
				out <- answer{}
				return
			}
			out <- answer{node: addr, ranges: ranges}
		}()
	}
	for range n {
		select {
		case a := <-out:
			if a.node == "" {
				continue
			}
			answered = true
			if !yield(a) {
				return true, false
			}
		case <-ctx.Done():
			return answered, false
		}
	}
	return answered, true
}

// refusedAddr returns the address a failed dial was refused at, or "".
func refusedAddr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" && op.Addr != nil {
		return op.Addr.String()
	}
	return ""
}

// lostNode reports whether err says that a call did not reach its node or
// got no answer: the kind of failure a stale slot map causes.
func lostNode(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, rueidis.ErrClosing) {
		return false
	}
	_, isReply := rueidis.IsRedisErr(err)
	return !isReply
}

func (s *Store) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
