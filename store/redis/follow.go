package redis

// Following the topology without traffic. rueidis reloads its slot map on a
// redirect, and after a lost connection once, after a random delay of up to
// a second: after a crash that reload comes before the replica's promotion,
// and a service that then sleeps learns of the promotion only from the
// first requests that fail. After a node moved to another address, the
// client keeps dialing the old one. So the store follows by itself:
//
//   - idle connections are pinged every pingEvery, and one whose PING goes
//     unanswered for ConnTimeout is torn down;
//   - when a connection is lost (closed by the node, or torn down so), it
//     asks every node it has seen, masters and replicas, every followEvery
//     (CLUSTER SHARDS), until every slot of the lost node is served by a
//     master that answers, and then rebuilds its client from the node that
//     said so;
//   - every patrolEvery it asks them all once, and follows so a master
//     that did not answer: rueidis pings no connection that waits for a
//     reply, nor one it has not dialed;
//   - when an attempt fails on its way to a node (refused, reset, timed
//     out), it asks at once, within the call's deadline, and rebuilds
//     before the retry when the answers show that the client's map is
//     stale: a master at an address the client does not know, or a lost
//     node's slots served by another master. After a second without a
//     call served, an attempt takes at most half the call's time, so that
//     a node that went silent meanwhile leaves time for that retry.
//
// The nodes it asks are the last known topology (every node the answers
// named, and the client's masters), then, when none answers, the seeds
// (Options.Addrs, their names resolved again).

import (
	"context"
	"errors"
	"iter"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

const (
	// pingEvery is how often an idle connection is pinged.
	pingEvery = 500 * time.Millisecond
	// followEvery paces a follower's questions; followFor bounds its life.
	followEvery = 50 * time.Millisecond
	followFor   = 30 * time.Second
	// followAsk bounds one round of questions: a node that holds them up
	// (dead, black-holed) delays no answer from the others.
	followAsk = 250 * time.Millisecond
	// roundEvery is the least time between two rounds asked for by failing
	// calls; refusedEvery, by calls refused by a node (a cheap, sure sign).
	roundEvery   = 50 * time.Millisecond
	refusedEvery = 10 * time.Millisecond
	// patrolEvery paces the store's own look at the slot map, from every
	// node, while no other round ran: a master that stopped answering is
	// followed even when no connection of the client noticed (rueidis does
	// not ping a connection that still waits for a reply, and one that has
	// not been dialed yet is not pinged at all).
	patrolEvery = time.Second
	// After idleAfter without a call served, the first attempts take at
	// most half their call's time, leaving time for a retry through a
	// rebuilt client. servedEvery paces the notes of calls served.
	idleAfter   = time.Second
	servedEvery = 100 * time.Millisecond
)

// answer is one node's slot map, as CLUSTER SLOTS gives it.
type answer struct {
	node   string
	ranges []slotRange
	nodes  []string // every online node it names, masters and replicas
	failed string   // the node that did not answer, instead
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
	// and whose masters all answered; nil when there is none.
	good map[string]bool
	// from is the node that answered good.
	from string
	// stale: good shows that the client's map is out of date.
	stale bool
	// lostBack: the lost node answered.
	lostBack bool
	// silent are the masters of the last map that the client sends to
	// and that did not answer (set only when the round asked them all).
	silent []string
}

// judge reads a round of answers. lost is the address of a node whose
// connection was lost or refused ("" for none); known, the masters the
// client sends to (rueidis keeps connections to those alone): when it
// still has the lost node, whose slots a good map gives to others, or
// lacks a master of that map, its map is stale. (rueidis reloads its map
// by itself after errors, under load: then there is nothing to rebuild.)
func judge(answers []answer, lost string, known map[string]bool) verdict {
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
			if !responsive[o] {
				ok = false // a master that did not answer: maybe dead, or a lagging node's memory
			}
		}
		if !ok {
			continue
		}
		v.good, v.from = owners, a.node
		for o := range owners {
			if !known[o] {
				v.stale = true // a master the client cannot reach
			}
		}
		if lost != "" && known[lost] {
			v.stale = true // the client still sends to the lost node
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
	seen    map[string]bool // its masters and replicas
	lost    sync.Map        // address → struct{}: a follower runs for it
	lastOK  atomic.Int64    // Unix ns of a call served, at most servedEvery old
	// clients reach the nodes the store's client has no connection to
	// (rueidis connects to masters only): the replicas, new addresses.
	clients map[string]rueidis.Client
}

// client returns a client of the node at addr alone, dialing it if need be.
func (s *Store) nodeClient(addr string) (rueidis.Client, error) {
	f := &s.follow
	f.mu.Lock()
	c, ok := f.clients[addr]
	f.mu.Unlock()
	if ok {
		return c, nil
	}
	o := s.options
	o.InitAddress, o.ForceSingleClient = []string{addr}, true
	o.ClusterOption = rueidis.ClusterOption{}
	o.Dialer.Timeout = followAsk
	// Small questions: small buffers, not 0.5 MiB each.
	o.ReadBufferEachConn, o.WriteBufferEachConn, o.RingScaleEachConn = 1<<13, 1<<13, 4
	c, err := rueidis.NewClient(o)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.clients[addr]; ok || s.isClosed() {
		c.Close()
		return old, nil
	}
	if f.clients == nil {
		f.clients = map[string]rueidis.Client{}
	}
	f.clients[addr] = c
	return c, nil
}

// dropClients closes the clients of the nodes keep does not name (all for
// nil).
func (f *follower) dropClients(keep map[string]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for addr, c := range f.clients {
		if !keep[addr] {
			c.Close()
			delete(f.clients, addr)
		}
	}
}

type round struct {
	done  chan struct{}
	lost  string
	fixed bool // the round rebuilt the client
}

// locate runs a round of questions (or joins the one running) and
// rebuilds the client when the answers show that its map is stale. With
// paced, a round that ended less than roundEvery ago is not repeated. A
// call refused by lost, paced, shows that the client still sends there. It
// returns the round's verdict and whether the client was rebuilt.
func (s *Store) locate(ctx context.Context, lost string, paced bool) (verdict, bool) {
	f := &s.follow
	f.mu.Lock()
	for r := f.running; r != nil; r = f.running {
		f.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return verdict{}, false
		}
		if r.fixed || !paced {
			return verdict{}, r.fixed
		}
		// The round began before this call failed, maybe before the
		// news: ask again, once, unpaced.
		f.mu.Lock()
		paced = false
	}
	every := roundEvery
	if lost != "" {
		every = refusedEvery
	}
	if paced && time.Since(f.lastEnd) < every {
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
	var v verdict
	var answers []answer
	for a := range s.ask(nodes, lost) {
		answers = append(answers, a)
		if v = judge(slices.Clone(answers), lost, known); v.stale {
			break // no need to wait for the silent ones
		}
	}
	f.mu.Lock()
	if !v.stale {
		answered := map[string]bool{}
		for _, a := range answers {
			answered[a.node] = true
		}
		for addr := range known {
			if f.last[addr] && !answered[addr] && addr != lost {
				v.silent = append(v.silent, addr)
			}
		}
	}
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
	if len(answers) > 0 {
		f.seen = map[string]bool{}
		for _, a := range answers {
			for _, n := range a.nodes {
				f.seen[n] = true
			}
		}
	}
	keep := maps.Clone(f.seen)
	f.mu.Unlock()
	f.dropClients(keep)
	if v.stale {
		// From the node that answered alone: a lagging peer's older map
		// would send the new client back to the lost node.
		r.fixed = s.rebuild("topology_changed", 0, "", 0, v.from)
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
		for n := range s.follow.seen {
			addrs[n] = true
		}
		s.follow.mu.Unlock()
		for a := range nodes {
			addrs[a] = true
		}
		// Masters named that were not asked (a promoted replica, a new
		// address) are asked next, in the same round: a map counts only
		// once its masters answered.
		named := map[string]bool{}
		collect := func(a answer) bool {
			for _, r := range a.ranges {
				named[r.owner] = !addrs[r.owner]
			}
			return yield(a)
		}
		answered, more := s.askEach(ctx, nodes, addrs, lost, collect)
		if more && slices.Contains(slices.Collect(maps.Values(named)), true) {
			var again bool
			if again, more = s.askEach(ctx, nodes, named, "", yield); again {
				answered = true
			}
		}
		if answered || !more {
			return
		}
		seeds := map[string]bool{}
		for _, a := range s.options.InitAddress {
			seeds[a] = !addrs[a]
		}
		s.askEach(ctx, nodes, seeds, "", yield)
	}
}

// askEach asks the addrs that are true, and reports whether any answered
// and whether yield wants more. It does not wait for lost once every other
// node has answered or failed: a black-holed node would hold up every
// round, and the promotion's news with it.
func (s *Store) askEach(ctx context.Context, nodes map[string]rueidis.Client, addrs map[string]bool, lost string, yield func(answer) bool) (answered, more bool) {
	out := make(chan answer, len(addrs))
	n := 0 // to wait for
	for addr, want := range addrs {
		if !want {
			continue
		}
		if addr != lost {
			n++
		}
		go func() {
			cl, ok := nodes[addr]
			if !ok { // a node the client has no connection to
				var err error
				if cl, err = s.nodeClient(addr); err != nil {
					out <- answer{failed: addr}
					return
				}
			}
			ranges, named, err := s.askShards(ctx, cl)
			if err != nil {
				out <- answer{failed: addr}
				return
			}
			out <- answer{node: addr, ranges: ranges, nodes: named}
		}()
	}
	for n > 0 {
		select {
		case a := <-out:
			if isLost := lost != "" && (a.node == lost || a.failed == lost); !isLost {
				n--
			}
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

// askShards asks one node for its slot map with CLUSTER SHARDS, which, unlike
// CLUSTER SLOTS on Redis 7.0, names every replica (a replica is what
// becomes the next master). A master that is not online serves nothing:
// its slots are left out. It also returns every node named that has not
// failed.
func (s *Store) askShards(ctx context.Context, c rueidis.Client) ([]slotRange, []string, error) {
	shards, err := c.Do(ctx, c.B().ClusterShards().Build()).ToArray()
	if err != nil {
		return nil, nil, err
	}
	var m []slotRange
	var named []string
	for _, sh := range shards {
		shard, err := sh.AsMap()
		if err != nil {
			continue
		}
		slotsMsg, nodesMsg := shard["slots"], shard["nodes"]
		slots, _ := slotsMsg.AsIntSlice()
		nodes, _ := nodesMsg.ToArray()
		var owner string
		var replicas []string
		for _, n := range nodes {
			node, err := n.AsMap()
			if err != nil {
				continue
			}
			field := func(k string) string { v := node[k]; s, _ := v.ToString(); return s }
			num := func(k string) int64 { v := node[k]; n, _ := v.AsInt64(); return n }
			// A replica may show as "loading" long after its sync (Redis
			// 7.0 tells its offset late): still a node to ask.
			health := field("health")
			if health == "fail" {
				continue
			}
			port := num("port")
			if tp := num("tls-port"); tp > 0 && s.options.TLSConfig != nil {
				port = tp
			}
			host := field("endpoint")
			if host == "" || host == "?" {
				host = field("ip")
			}
			addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
			named = append(named, addr)
			switch {
			case field("role") == "master" && health == "online":
				owner = addr
			case field("role") != "master":
				replicas = append(replicas, addr)
			}
		}
		if owner == "" {
			continue
		}
		for i := 0; i+1 < len(slots); i += 2 {
			m = append(m, slotRange{first: uint16(slots[i]), last: uint16(slots[i+1]), owner: owner, replicas: replicas})
		}
	}
	return m, named, nil
}
