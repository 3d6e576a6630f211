package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	slotCount   = 16384
	healthEvery = 50 * time.Millisecond // between checks of the whole cluster
)

// SlotRange is an inclusive range of hash slots.
type SlotRange struct{ First, Last int }

// nodeInfo is one line of CLUSTER NODES: what one node believes about another.
type nodeInfo struct {
	id, addr string
	master   bool
	masterID string // for a replica
	myself   bool
	fail     bool // agreed by a quorum of masters
	pfail    bool // the observer's own suspicion
	pending  bool // handshake or noaddr: not yet a usable peer
	slots    []SlotRange
}

// parseClusterNodes parses a CLUSTER NODES reply. Slots being migrated
// ("[5-<-id]") are left out: only the two nodes involved list them.
func parseClusterNodes(s string) ([]nodeInfo, error) {
	var out []nodeInfo
	for l := range strings.Lines(s) {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES: short line %q", l)
		}
		ni := nodeInfo{id: f[0]}
		// ip:port@cport[,hostname]
		hostPort, _, _ := strings.Cut(f[1], "@")
		if i := strings.LastIndexByte(hostPort, ':'); i >= 0 {
			ni.addr = net.JoinHostPort(hostPort[:i], hostPort[i+1:])
		}
		for fl := range strings.SplitSeq(f[2], ",") {
			switch fl {
			case "myself":
				ni.myself = true
			case "master":
				ni.master = true
			case "fail":
				ni.fail = true
			case "fail?":
				ni.pfail = true
			case "handshake", "noaddr":
				ni.pending = true
			}
		}
		if f[3] != "-" {
			ni.masterID = f[3]
		}
		for _, sl := range f[8:] {
			if strings.HasPrefix(sl, "[") {
				continue
			}
			first, last, isRange := strings.Cut(sl, "-")
			a, err1 := strconv.Atoi(first)
			b, err2 := a, error(nil)
			if isRange {
				b, err2 = strconv.Atoi(last)
			}
			if err1 != nil || err2 != nil || a < 0 || b < a || b >= slotCount {
				return nil, fmt.Errorf("CLUSTER NODES: bad slot range %q", sl)
			}
			ni.slots = append(ni.slots, SlotRange{a, b})
		}
		out = append(out, ni)
	}
	return out, nil
}

// nodeError ties an error to the node it concerns, so that callers can attach
// that node's log.
type nodeError struct {
	node *Node
	err  error
}

func (e *nodeError) Error() string { return e.node.Addr + ": " + e.err.Error() }
func (e *nodeError) Unwrap() error { return e.err }

func errorAt(n *Node, format string, args ...any) error {
	return &nodeError{n, fmt.Errorf(format, args...)}
}

// withLog appends the log tail of the node an error concerns, if any.
func withLog(err error) error {
	var ne *nodeError
	if errors.As(err, &ne) {
		return fmt.Errorf("%w\nlast log lines of %s:\n%s", err, ne.node.Addr, ne.node.LogTail(15))
	}
	return err
}

// view asks one node for its CLUSTER NODES.
func (c *Cluster) view(ctx context.Context, n *Node) ([]nodeInfo, error) {
	v, err := n.Do(ctx, "CLUSTER", "NODES")
	if err != nil {
		return nil, &nodeError{n, err}
	}
	s, ok := v.(string)
	if !ok {
		return nil, errorAt(n, "CLUSTER NODES reply is %T", v)
	}
	ns, err := parseClusterNodes(s)
	if err != nil {
		return nil, &nodeError{n, err}
	}
	return ns, nil
}

// firstView is the CLUSTER NODES of the first running node.
func (c *Cluster) firstView(ctx context.Context) ([]nodeInfo, error) {
	for _, n := range c.nodes {
		if n.Running() {
			return c.view(ctx, n)
		}
	}
	return nil, errors.New("testcluster: no node is running")
}

// check returns the view every running node agrees on, or why the cluster is
// not healthy. Healthy means, for the nodes that are running:
//   - each reports cluster_state:ok;
//   - each knows exactly this cluster's nodes, running ones at their
//     addresses and flagged neither failing nor in handshake;
//   - all agree on each running node's role, master and slots, and on the
//     slots of stopped ones;
//   - running masters own all 16384 slots (cluster_state stays ok without
//     full coverage when cluster-require-full-coverage is no);
//   - each running replica has master_link_status:up, so it is loaded and
//     streaming.
//
// Stopped nodes are otherwise ignored: their role in a peer's table is stale
// and may differ between peers.
func (c *Cluster) check(ctx context.Context) ([]nodeInfo, error) {
	var agreed []nodeInfo
	var agreedKey string
	var observer *Node
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		ns, err := c.checkNode(ctx, n)
		if err != nil {
			return nil, err
		}
		key := c.viewKey(ns)
		switch {
		case observer == nil:
			agreed, agreedKey, observer = ns, key, n
		case key != agreedKey:
			return nil, errorAt(n, "CLUSTER NODES disagrees with %s's: %s", observer.Addr, firstDiff(key, agreedKey))
		}
	}
	if observer == nil {
		return nil, errors.New("testcluster: no node is running")
	}
	covered := 0
	for _, ni := range agreed {
		if len(ni.slots) == 0 {
			continue
		}
		owner := c.byID(ni.id)
		if !owner.Running() {
			return nil, fmt.Errorf("slots %v are owned by stopped node %s", ni.slots, owner.Addr)
		}
		for _, r := range ni.slots {
			covered += r.Last - r.First + 1
		}
	}
	if covered != slotCount {
		return nil, fmt.Errorf("masters own %d of %d slots", covered, slotCount)
	}
	return agreed, nil
}

// checkNode checks what can be checked on one node alone and returns its view.
func (c *Cluster) checkNode(ctx context.Context, n *Node) ([]nodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, probeLimit)
	defer cancel()
	cn, err := n.dial(ctx)
	if err != nil {
		return nil, &nodeError{n, err}
	}
	defer cn.close()
	info, err := cn.text("CLUSTER", "INFO")
	if err != nil {
		return nil, &nodeError{n, err}
	}
	if st, _ := infoField(info, "cluster_state"); st != "ok" {
		return nil, errorAt(n, "cluster_state is %q", st)
	}
	text, err := cn.text("CLUSTER", "NODES")
	if err != nil {
		return nil, &nodeError{n, err}
	}
	ns, err := parseClusterNodes(text)
	if err != nil {
		return nil, &nodeError{n, err}
	}
	if len(ns) != len(c.nodes) {
		return nil, errorAt(n, "knows %d nodes, want %d", len(ns), len(c.nodes))
	}
	var self nodeInfo
	for _, ni := range ns {
		peer := c.byID(ni.id)
		switch {
		case peer == nil:
			return nil, errorAt(n, "knows unknown node %s", ni.id)
		case ni.myself:
			if peer != n {
				return nil, errorAt(n, "calls itself %s", ni.id)
			}
			self = ni
		}
		if !peer.Running() {
			continue
		}
		switch {
		case ni.fail, ni.pfail:
			return nil, errorAt(n, "flags running node %s as failing", peer.Addr)
		case ni.pending:
			return nil, errorAt(n, "is still in handshake with %s", peer.Addr)
		case ni.addr != peer.Announced():
			return nil, errorAt(n, "knows %s at %s, want %s", peer.Addr, ni.addr, peer.Announced())
		}
	}
	if self.id == "" {
		return nil, errorAt(n, "CLUSTER NODES has no myself line")
	}
	if !self.master {
		repl, err := cn.text("INFO", "replication")
		if err != nil {
			return nil, &nodeError{n, err}
		}
		if st, _ := infoField(repl, "master_link_status"); st != "up" {
			return nil, errorAt(n, "master_link_status is %q", st)
		}
	}
	return ns, nil
}

// viewKey renders the parts of a view that all nodes must agree on.
func (c *Cluster) viewKey(ns []nodeInfo) string {
	ns = slices.Clone(ns)
	slices.SortFunc(ns, func(a, b nodeInfo) int { return strings.Compare(a.id, b.id) })
	var b strings.Builder
	for _, ni := range ns {
		fmt.Fprintf(&b, "%s %v", ni.id, ni.slots)
		if c.byID(ni.id).Running() {
			fmt.Fprintf(&b, " %s %t %s", ni.addr, ni.master, ni.masterID)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// firstDiff shows the first line where two view keys differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return fmt.Sprintf("%q vs %q", al[i], bl[i])
		}
	}
	return "different node count"
}

// waitFor polls until the cluster is healthy and cond (if not nil) accepts
// the agreed view, then returns that view. It records role changes for
// Failover's spacing rule.
func (c *Cluster) waitFor(ctx context.Context, cond func([]nodeInfo) error) ([]nodeInfo, error) {
	begin := time.Now()
	for {
		ns, err := c.check(ctx)
		if err == nil && cond != nil {
			err = cond(ns)
		}
		if err == nil {
			c.noteRoles(ns)
			return ns, nil
		}
		if serr := sleep(ctx, healthEvery); serr != nil {
			return nil, fmt.Errorf("testcluster: not healthy after %v: %w: %w",
				time.Since(begin).Round(time.Millisecond), serr, err)
		}
	}
}

// noteRoles records when a node was last seen to change role.
func (c *Cluster) noteRoles(ns []nodeInfo) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ni := range ns {
		n := c.byID(ni.id)
		if !n.Running() {
			continue
		}
		if was, ok := c.wasMaster[n]; ok && was != ni.master {
			c.roleChanged[n] = now
		}
		c.wasMaster[n] = ni.master
	}
}
