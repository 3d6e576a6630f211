// Package testcluster runs real redis-server processes for tests, benchmarks
// and the chaos suite: a Redis Cluster (Start) or one standalone server
// (StartStandalone), always on loopback.
//
// Tollgate must survive what only a real cluster does: MOVED redirects to raw
// IP addresses, replica promotion, CLUSTERDOWN on a shard without a master. So
// the package runs the real server, one process per node, each node on its own
// loopback address (127.0.0.11, 127.0.0.12, …) and all on one port, the way a
// managed cluster's nodes look to a client.
//
// Start returns only once the cluster is healthy in the sense of WaitHealthy,
// because right after creation replicas are still loading and CLUSTER SLOTS
// may be empty. Failover, Node.Kill and Node.Restart inject faults; WaitHealthy
// waits for the cluster to recover. MoveSlots, or BeginMigration, MigrateKeys
// and FinishMigration step by step, migrate slots (ASK and MOVED on demand).
// Options.Announce and Node.Announce put nodes behind other ports, such as
// fault proxies'.
//
// Several test binaries may use the package at once (go test runs packages in
// parallel): each cluster picks a random free port and picks another when a
// concurrent one wins the race for it. Nodes get SIGKILL when the test binary
// exits, so none outlives it even when Stop never runs.
//
// The package talks to nodes with its own minimal RESP client, so it does not
// depend on the Redis client library under test. It needs Linux and
// redis-server 7.0 or newer. Facts behind the settings and timings are in
// shared/notes/local-cluster.md.
//
// Typical use, from TestMain:
//
//	c, err := testcluster.Start(ctx, testcluster.Options{})
//	if err != nil { … }
//	code := m.Run()
//	c.Stop()
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for zero Options fields and unbounded contexts.
const (
	DefaultMasters     = 3
	DefaultReplicas    = 1
	DefaultNodeTimeout = 2 * time.Second
	// DefaultFirstHost is the first cluster node's address; node i listens
	// on the address i above it.
	DefaultFirstHost = "127.0.0.11"
	// DefaultStandaloneHost is StartStandalone's address, next to the
	// cluster's.
	DefaultStandaloneHost = "127.0.0.10"
	// DefaultTimeout bounds every call taking a context that has no deadline,
	// so a broken node fails a test instead of hanging it.
	DefaultTimeout = 30 * time.Second
)

// ErrNoServer means the redis-server binary was not found. Tests skip on it,
// except in CI where it must fail.
var ErrNoServer = errors.New("testcluster: redis-server not found")

// Options configures a cluster or a standalone server. The zero value gives
// the standard test cluster: 3 masters with 1 replica each on 127.0.0.11–16.
type Options struct {
	// Masters is the number of masters; they split the 16384 slots evenly.
	// Zero means DefaultMasters.
	Masters int
	// Replicas is the number of replicas per master. Zero means
	// DefaultReplicas; use NoReplicas for masters only.
	Replicas int
	// NoReplicas starts masters only, whatever Replicas says.
	NoReplicas bool

	// Hosts gives each node its loopback IP address: the masters first, then
	// the first replica of every master, then the second, and so on. Nil
	// means DefaultFirstHost and the addresses after it for a cluster, and
	// DefaultStandaloneHost for a standalone server. Other than loopback IP
	// addresses are rejected.
	Hosts []string
	// Port is every node's client port; the cluster bus uses Port+10000.
	// Zero picks a free port at random and retries with another one if a
	// concurrent test binary takes it first. A fixed port is not retried.
	Port int

	// NodeTimeout is cluster-node-timeout: how long a node may be
	// unreachable before the cluster fails it over. Zero means
	// DefaultNodeTimeout. Whole milliseconds.
	NodeTimeout time.Duration
	// RequireFullCoverage sets cluster-require-full-coverage. The default,
	// false, confines a shard's outage to its slots; true turns the whole
	// cluster CLUSTERDOWN while any slot has no master, as Redis does by
	// default.
	RequireFullCoverage bool

	// Dir holds one directory per node. Empty means a new temporary
	// directory, removed by Stop; a given Dir is kept.
	Dir string
	// RedisServer is the redis-server binary. Empty means "redis-server"
	// looked up in PATH.
	RedisServer string
	// ExtraConfig lines are appended to every node's redis.conf, after and
	// so overriding the package's own settings.
	ExtraConfig []string
	// Password, when set, protects every node (requirepass: the default
	// user's password) and authenticates replicas to their masters
	// (masterauth). The package authenticates its own connections with it;
	// after rotating the password on the nodes, tell it with SetPassword.
	Password string
	// Announce, when set, is called for each cluster node before it starts
	// (again if Start retries on another port) with the node's address and
	// bus port, and returns the ports the node is to announce instead, 0
	// meaning its own: typically those of proxies in front of it (see
	// internal/faultproxy), so that clients and peers reach it through
	// them. The package itself still talks to the node directly.
	Announce func(host string, port, busPort int) (announcePort, announceBusPort int, err error)
	// Logf receives progress messages, such as t.Logf. Nil discards them.
	Logf func(format string, args ...any)

	// pickPort replaces freePort in tests.
	pickPort func(hosts []string, bus bool) (int, error)
}

// normalize applies defaults and validates, once, before anything starts.
func (o Options) normalize(standalone bool) (Options, error) {
	if o.Masters < 0 || o.Replicas < 0 {
		return o, errors.New("testcluster: negative Masters or Replicas")
	}
	if o.Masters == 0 {
		o.Masters = DefaultMasters
	}
	switch {
	case o.NoReplicas:
		o.Replicas = 0
	case o.Replicas == 0:
		o.Replicas = DefaultReplicas
	}
	nodes := o.Masters * (1 + o.Replicas)
	if standalone {
		nodes = 1
	}
	if o.Hosts == nil {
		first := net.ParseIP(DefaultStandaloneHost).To4()
		if !standalone {
			first = net.ParseIP(DefaultFirstHost).To4()
		}
		if int(first[3])+nodes > 255 {
			return o, fmt.Errorf("testcluster: %d nodes do not fit in 127.0.0.0/24 from %v", nodes, first)
		}
		for i := range nodes {
			o.Hosts = append(o.Hosts, net.IPv4(127, 0, 0, first[3]+byte(i)).String())
		}
	}
	if len(o.Hosts) != nodes {
		return o, fmt.Errorf("testcluster: %d hosts for %d nodes", len(o.Hosts), nodes)
	}
	if err := checkHosts(o.Hosts); err != nil {
		return o, err
	}
	if o.Port < 0 || o.Port > 65535-busPortOffset {
		return o, fmt.Errorf("testcluster: port %d out of range", o.Port)
	}
	switch {
	case o.NodeTimeout < 0:
		return o, errors.New("testcluster: negative NodeTimeout")
	case o.NodeTimeout == 0:
		o.NodeTimeout = DefaultNodeTimeout
	case o.NodeTimeout < time.Millisecond:
		return o, errors.New("testcluster: NodeTimeout below 1ms")
	}
	if o.RedisServer == "" {
		o.RedisServer = "redis-server"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.pickPort == nil {
		o.pickPort = freePort
	}
	return o, nil
}

// prepare normalizes opt and resolves the binary and the directory, for
// Start and StartStandalone.
func prepare(opt Options, standalone bool) (o Options, bin, dir string, owned bool, err error) {
	if o, err = opt.normalize(standalone); err != nil {
		return o, "", "", false, err
	}
	if bin, err = exec.LookPath(o.RedisServer); err != nil {
		return o, "", "", false, fmt.Errorf("%w: %w", ErrNoServer, err)
	}
	if o.Dir != "" {
		return o, bin, o.Dir, false, os.MkdirAll(o.Dir, 0o755)
	}
	dir, err = os.MkdirTemp("", "testcluster-")
	return o, bin, dir, true, err
}

// launch starts one node per host, all on one port, and waits until each
// serves. If a node lost the race for a port picked here, it stops them all
// and tries another port.
func launch(ctx context.Context, o Options, bin, dir string, cluster bool) ([]*Node, error) {
	for attempt := 1; ; attempt++ {
		port := o.Port
		if port == 0 {
			var err error
			if port, err = o.pickPort(o.Hosts, cluster); err != nil {
				return nil, err
			}
		}
		nodes, err := startNodes(ctx, o, bin, dir, port, cluster)
		if err == nil {
			return nodes, nil
		}
		if o.Port != 0 || attempt == maxAttempts || !errors.Is(err, errPortTaken) {
			return nil, err
		}
		o.Logf("testcluster: port %d was taken meanwhile, picking another", port)
	}
}

func startNodes(ctx context.Context, o Options, bin, dir string, port int, cluster bool) ([]*Node, error) {
	var nodes []*Node
	fail := func(err error) ([]*Node, error) {
		return nil, errors.Join(err, stopNodes(nodes))
	}
	for i, h := range o.Hosts {
		n := &Node{
			Addr:     net.JoinHostPort(h, strconv.Itoa(port)),
			Host:     h,
			Port:     port,
			Dir:      filepath.Join(dir, fmt.Sprintf("node%d", i)),
			bin:      bin,
			password: o.Password,
		}
		if cluster {
			n.BusPort = port + busPortOffset
			if o.Announce != nil {
				var err error
				if n.announcePort, n.announceBusPort, err = o.Announce(h, port, n.BusPort); err != nil {
					return fail(fmt.Errorf("testcluster: Announce for %s: %w", n.Addr, err))
				}
			}
		}
		// A previous attempt may have left a nodes.conf for another port.
		if err := os.RemoveAll(n.Dir); err != nil {
			return fail(err)
		}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			return fail(err)
		}
		if err := n.writeConfig(o); err != nil {
			return fail(err)
		}
		if err := n.start(); err != nil {
			return fail(err)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.waitServing(ctx); err != nil {
			return fail(err)
		}
	}
	return nodes, nil
}

// Cluster is a running Redis Cluster. Its methods are safe for concurrent
// use.
type Cluster struct {
	opt    Options
	nodes  []*Node // masters first, as in Options.Hosts
	dir    string
	ownDir bool

	stopOnce sync.Once
	stopErr  error

	mu          sync.Mutex
	wasMaster   map[*Node]bool      // role at the last healthy check
	roleChanged map[*Node]time.Time // when that role last changed
}

// Start starts the nodes, forms the cluster and waits until it is healthy
// (see WaitHealthy). That takes about 2 s, most of it Redis' own delay before
// a new master reports cluster_state:ok. With the default Hosts, masters are
// 127.0.0.11–13 and 127.0.0.14–16 replicate them in that order. On failure it stops whatever it
// started and returns an error with the failing node's last log lines; when
// redis-server is missing the error wraps ErrNoServer. Without a context
// deadline Start gives up after DefaultTimeout. Cancelling ctx after Start
// returns does not affect the cluster: call Stop.
func Start(ctx context.Context, opt Options) (*Cluster, error) {
	o, bin, dir, owned, err := prepare(opt, false)
	if err != nil {
		return nil, err
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	begin := time.Now()
	c := &Cluster{
		opt:         o,
		dir:         dir,
		ownDir:      owned,
		wasMaster:   map[*Node]bool{},
		roleChanged: map[*Node]time.Time{},
	}
	if c.nodes, err = launch(ctx, o, bin, dir, true); err == nil {
		err = c.create(ctx)
	}
	if err != nil {
		return nil, errors.Join(withLog(err), c.Stop())
	}
	o.Logf("testcluster: %d nodes (%d masters) from %s, port %d, healthy after %v (dir %s)",
		len(c.nodes), o.Masters, c.nodes[0].Addr, c.nodes[0].Port, time.Since(begin).Round(time.Millisecond), dir)
	return c, nil
}

// create forms the cluster from fresh nodes, as redis-cli --cluster create
// does: distinct config epochs, slots split over the masters, one MEET per
// node, then replicas attached once every node knows every other.
func (c *Cluster) create(ctx context.Context) error {
	masters := c.opt.Masters
	for i, n := range c.nodes {
		id, err := n.Do(ctx, "CLUSTER", "MYID")
		if err != nil {
			return &nodeError{n, err}
		}
		if n.ID, _ = id.(string); n.ID == "" {
			return errorAt(n, "CLUSTER MYID replied %v", id)
		}
		// Distinct epochs settle slot ownership without a collision round.
		if _, err := n.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1); err != nil {
			return &nodeError{n, err}
		}
		if i < masters {
			first, last := i*slotCount/masters, (i+1)*slotCount/masters-1
			if _, err := n.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", first, last); err != nil {
				return &nodeError{n, err}
			}
		}
	}
	for _, n := range c.nodes[1:] {
		if _, err := c.nodes[0].Do(ctx, "CLUSTER", "MEET", n.Host, n.Port, n.BusPort); err != nil {
			return &nodeError{c.nodes[0], err}
		}
	}
	// REPLICATE needs the master known; gossip spreads MEET in about a second.
	for i, n := range c.nodes[masters:] {
		master := c.nodes[i%masters]
		for {
			_, err := n.Do(ctx, "CLUSTER", "REPLICATE", master.ID)
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "Unknown node") {
				return errorAt(n, "CLUSTER REPLICATE %s: %w", master.Addr, err)
			}
			if serr := sleep(ctx, healthEvery); serr != nil {
				return errorAt(n, "CLUSTER REPLICATE %s: %w (%w)", master.Addr, err, serr)
			}
		}
	}
	_, err := c.waitFor(ctx, nil)
	return err
}

// Stop stops every node (SIGTERM, then SIGKILL after a short grace), waits
// for them to exit and removes the directory if Start created it. It is
// idempotent; later calls return the first call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.stopErr = stopNodes(c.nodes)
		if c.ownDir {
			c.stopErr = errors.Join(c.stopErr, os.RemoveAll(c.dir))
		}
	})
	return c.stopErr
}

// Addrs returns every node's announced "host:port" (Node.Announced),
// masters first: a client's seed list. Stopped nodes are included; the list
// changes only when Node.Announce changes an address.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Announced()
	}
	return addrs
}

// SetPassword makes the package authenticate its own connections to every
// node with password from now on, after a test rotated it on the nodes
// (ACL SETUSER default >new <old, CONFIG SET masterauth). It does not
// change the nodes.
func (c *Cluster) SetPassword(password string) {
	for _, n := range c.nodes {
		n.SetPassword(password)
	}
}

// Nodes returns every node in Options.Hosts order. Roles as created: the
// first Masters nodes are masters; ask Shards or Node.Role for current roles.
func (c *Cluster) Nodes() []*Node { return slices.Clone(c.nodes) }

// Do runs one command on the node at addr (see Node.Do); addr is a node's
// Addr or announced address, typically taken from a MOVED or ASK reply.
func (c *Cluster) Do(ctx context.Context, addr string, args ...any) (any, error) {
	for _, n := range c.nodes {
		if n.Addr == addr || n.Announced() == addr {
			return n.Do(ctx, args...)
		}
	}
	return nil, fmt.Errorf("testcluster: %s is not a node of this cluster", addr)
}

func (c *Cluster) byID(id string) *Node {
	for _, n := range c.nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Shard is a master that owns slots, and its replicas.
type Shard struct {
	Slots    []SlotRange // ascending
	Master   *Node
	Replicas []*Node
}

// Shards returns the shards ordered by first slot, as the first running node
// sees them. A killed node keeps its role there until the cluster notices;
// call WaitHealthy first for a view every node agrees on.
func (c *Cluster) Shards(ctx context.Context) ([]Shard, error) {
	ns, err := c.firstView(ctx)
	if err != nil {
		return nil, err
	}
	var shards []Shard
	for _, ni := range ns {
		if n := c.byID(ni.id); n != nil && ni.master && len(ni.slots) > 0 {
			shards = append(shards, Shard{Slots: ni.slots, Master: n})
		}
	}
	slices.SortFunc(shards, func(a, b Shard) int { return a.Slots[0].First - b.Slots[0].First })
	for _, ni := range ns {
		for i := range shards {
			if n := c.byID(ni.id); n != nil && !ni.master && ni.masterID == shards[i].Master.ID {
				shards[i].Replicas = append(shards[i].Replicas, n)
			}
		}
	}
	return shards, nil
}

// Masters returns the masters of Shards.
func (c *Cluster) Masters(ctx context.Context) ([]*Node, error) {
	shards, err := c.Shards(ctx)
	var ms []*Node
	for _, s := range shards {
		ms = append(ms, s.Master)
	}
	return ms, err
}

// Replicas returns the replicas of Shards, shard by shard.
func (c *Cluster) Replicas(ctx context.Context) ([]*Node, error) {
	shards, err := c.Shards(ctx)
	var rs []*Node
	for _, s := range shards {
		rs = append(rs, s.Replicas...)
	}
	return rs, err
}

// WaitHealthy waits until, among running nodes, every node reports
// cluster_state:ok, every replica's link to its master is up, all nodes agree
// on CLUSTER NODES, no running node is flagged as failing and running masters
// own all 16384 slots. Killed nodes are ignored, so after killing a master it
// returns once a replica has taken over. Without a context deadline it gives
// up after DefaultTimeout, with the log tail of the node that was not ready.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	_, err := c.waitFor(ctx, nil)
	return withLog(err)
}

// Failover promotes replica with CLUSTER FAILOVER (the graceful kind: no
// write is lost) and waits until every running node agrees that it is master
// and its old master is its replica. The master must be running; when it is
// dead the cluster fails over by itself (see WaitHealthy), or use Do with
// CLUSTER FAILOVER TAKEOVER.
//
// Redis 7.0 may refuse or revert a manual failover soon after the same shard
// changed roles, so Failover first waits, if needed, until 4×NodeTimeout have
// passed since replica or its master was last seen changing role (by Start,
// WaitHealthy or Failover).
func (c *Cluster) Failover(ctx context.Context, replica *Node) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	master, err := c.masterOf(ctx, replica)
	if err != nil {
		return err
	}
	if wait := c.spacing(replica, master); wait > 0 {
		c.opt.Logf("testcluster: waiting %v before another failover of %s's shard", wait.Round(time.Millisecond), master.Addr)
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("testcluster: failover of %s: %w", replica.Addr, err)
		}
	}
	begin := time.Now()
	if _, err := replica.Do(ctx, "CLUSTER", "FAILOVER"); err != nil {
		return &nodeError{replica, err}
	}
	// Redis abandons a manual failover after 5 s; agreement follows within
	// about a second of the promotion.
	ctx, cancel = context.WithTimeout(ctx, 5*time.Second+2*c.opt.NodeTimeout)
	defer cancel()
	_, err = c.waitFor(ctx, func(ns []nodeInfo) error {
		for _, ni := range ns {
			switch {
			case ni.id == replica.ID && !ni.master:
				return errorAt(replica, "not promoted yet")
			case ni.id == master.ID && master.Running() && ni.masterID != replica.ID:
				return errorAt(master, "not yet a replica of %s", replica.Addr)
			}
		}
		return nil
	})
	if err != nil {
		return withLog(err)
	}
	c.opt.Logf("testcluster: %s took over from %s; converged after %v",
		replica.Addr, master.Addr, time.Since(begin).Round(time.Millisecond))
	return nil
}

// FailoverDelay returns how long Failover of replica would wait before
// promoting it (see Failover's spacing rule); 0 means at once. Callers that
// must know when the failover starts, such as a chaos test placing a fault
// marker, wait this long first.
func (c *Cluster) FailoverDelay(ctx context.Context, replica *Node) (time.Duration, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	master, err := c.masterOf(ctx, replica)
	if err != nil {
		return 0, err
	}
	return max(0, c.spacing(replica, master)), nil
}

// masterOf returns the master that replica replicates, by replica's view.
func (c *Cluster) masterOf(ctx context.Context, replica *Node) (*Node, error) {
	if !slices.Contains(c.nodes, replica) {
		return nil, errors.New("testcluster: failover of a node not in this cluster")
	}
	ns, err := c.view(ctx, replica)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(ns, func(ni nodeInfo) bool { return ni.myself })
	if i < 0 || ns[i].master {
		return nil, errorAt(replica, "not a replica")
	}
	master := c.byID(ns[i].masterID)
	if master == nil {
		return nil, errorAt(replica, "replicates unknown node %s", ns[i].masterID)
	}
	return master, nil
}

// spacing is how long to wait before a manual failover of replica's shard:
// until 4×NodeTimeout after either node last changed role.
func (c *Cluster) spacing(replica, master *Node) time.Duration {
	c.mu.Lock()
	last := c.roleChanged[replica]
	if t := c.roleChanged[master]; t.After(last) {
		last = t
	}
	c.mu.Unlock()
	return time.Until(last.Add(4 * c.opt.NodeTimeout))
}
