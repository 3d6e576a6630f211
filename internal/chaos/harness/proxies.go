package harness

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/faultproxy"
	"github.com/tollgate/tollgate/internal/testcluster"
)

// Proxies are the fault proxies of a cluster behind proxies: per node host,
// one for clients (and replicas) and one for the cluster bus, so that
// clients, replicas and peers all reach a node through its proxies.
type Proxies struct {
	mu      sync.Mutex
	client  map[string]*faultproxy.Proxy
	bus     map[string]*faultproxy.Proxy
	retired []*faultproxy.Proxy
}

// NewProxies returns an empty set; pass its Announce as
// testcluster.Options.Announce.
func NewProxies() *Proxies {
	return &Proxies{client: map[string]*faultproxy.Proxy{}, bus: map[string]*faultproxy.Proxy{}}
}

// Announce is testcluster.Options.Announce: it puts two proxies in front of
// a node, on the node's own address.
func (ps *Proxies) Announce(host string, port, busPort int) (int, int, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.client[host]; p != nil { // Start retries on another port
		ps.retired = append(ps.retired, p, ps.bus[host])
	}
	c, err := faultproxy.New(net.JoinHostPort(host, "0"), net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return 0, 0, err
	}
	b, err := faultproxy.New(net.JoinHostPort(host, "0"), net.JoinHostPort(host, strconv.Itoa(busPort)))
	if err != nil {
		c.Close()
		return 0, 0, err
	}
	ps.client[host], ps.bus[host] = c, b
	return c.Port(), b.Port(), nil
}

// Of returns n's proxies.
func (ps *Proxies) Of(n *testcluster.Node) (client, bus *faultproxy.Proxy) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.client[n.Host], ps.bus[n.Host]
}

// All returns every current proxy.
func (ps *Proxies) All() []*faultproxy.Proxy {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []*faultproxy.Proxy
	for h, p := range ps.client {
		out = append(out, p, ps.bus[h])
	}
	return out
}

// Partition cuts n off from clients, replicas and peers in both directions:
// its proxies hold everything, and the other nodes' proxies hold what n
// sends them (nodes dial from their own address). Bytes flow again on Heal.
func (ps *Proxies) Partition(n *testcluster.Node) {
	c, b := ps.Of(n)
	c.SetMode(faultproxy.BlackHole)
	b.SetMode(faultproxy.BlackHole)
	for _, p := range ps.All() {
		if p != c && p != b {
			p.SetSourceMode(n.Host, faultproxy.BlackHole)
		}
	}
}

// Heal undoes Partition.
func (ps *Proxies) Heal(n *testcluster.Node) {
	c, b := ps.Of(n)
	c.SetMode(faultproxy.Forward)
	b.SetMode(faultproxy.Forward)
	for _, p := range ps.All() {
		p.ClearSourceModes()
	}
}

// Move gives n a new client proxy and closes the old one, so that n is gone
// from its old address and announces the new one: a node that comes back on
// another port. It returns the old and new addresses.
func (ps *Proxies) Move(ctx context.Context, n *testcluster.Node) (string, string, error) {
	old, bus := ps.Of(n)
	p, err := faultproxy.New(net.JoinHostPort(n.Host, "0"), n.Addr)
	if err != nil {
		return "", "", err
	}
	old.Close()
	if err := n.Announce(ctx, p.Port(), bus.Port()); err != nil {
		p.Close()
		return "", "", err
	}
	ps.mu.Lock()
	ps.client[n.Host] = p
	ps.retired = append(ps.retired, old)
	ps.mu.Unlock()
	return old.Addr(), p.Addr(), nil
}

// MoveHost moves n to another address, host, as managed clusters replace
// nodes: new proxies for clients and the bus listen on host, n announces
// them, and once every node of c knows the new address the old proxies
// close, so that n's old address refuses connections. It returns the old
// and new client addresses.
func (ps *Proxies) MoveHost(ctx context.Context, c *testcluster.Cluster, n *testcluster.Node, host string) (string, string, error) {
	oldC, oldB := ps.Of(n)
	p, err := faultproxy.New(net.JoinHostPort(host, "0"), n.Addr)
	if err != nil {
		return "", "", err
	}
	b, err := faultproxy.New(net.JoinHostPort(host, "0"), net.JoinHostPort(n.Host, strconv.Itoa(n.BusPort)))
	if err != nil {
		p.Close()
		return "", "", err
	}
	if err := n.AnnounceHost(ctx, host, p.Port(), b.Port()); err != nil {
		p.Close()
		b.Close()
		return "", "", err
	}
	ps.mu.Lock()
	ps.client[n.Host], ps.bus[n.Host] = p, b
	ps.retired = append(ps.retired, oldC, oldB)
	ps.mu.Unlock()
	// Peers and replicas reconnect to the new address once they know it.
	if err := c.WaitHealthy(ctx); err != nil {
		return "", "", err
	}
	oldC.Close()
	oldB.Close()
	return oldC.Addr(), p.Addr(), nil
}

// Close closes every proxy, current and retired.
func (ps *Proxies) Close() {
	for _, p := range append(ps.All(), ps.retired...) {
		p.Close()
	}
}

// WaitPromoted waits until replica is a master and every running node but
// except reports cluster_state:ok: the cluster has taken over from a master
// that is partitioned away (WaitHealthy would wait for it too).
func WaitPromoted(ctx context.Context, c *testcluster.Cluster, replica, except *testcluster.Node) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := func() error {
			if role, err := replica.Role(ctx); err != nil || role != testcluster.RoleMaster {
				return fmt.Errorf("%s is %s (%v), not master yet", replica.Addr, role, err)
			}
			for _, n := range c.Nodes() {
				if n == except || !n.Running() {
					continue
				}
				v, err := n.Do(ctx, "CLUSTER", "INFO")
				if err != nil {
					return err
				}
				if s, _ := v.(string); !strings.Contains(s, "cluster_state:ok") {
					return fmt.Errorf("%s: cluster state not ok", n.Addr)
				}
			}
			return nil
		}()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartCluster starts the chaos cluster: 3 masters and 3 replicas with
// cluster-node-timeout NodeTimeout, and with proxied set behind fault
// proxies (returned; nil otherwise), which the caller closes after stopping
// the cluster. o's other fields, such as ExtraConfig and Logf, are kept.
func StartCluster(ctx context.Context, o testcluster.Options, proxied bool) (*testcluster.Cluster, *Proxies, error) {
	o.NodeTimeout = NodeTimeout
	var ps *Proxies
	if proxied {
		ps = NewProxies()
		o.Announce = ps.Announce
	}
	c, err := testcluster.Start(ctx, o)
	if err != nil && ps != nil {
		ps.Close()
		ps = nil
	}
	return c, ps, err
}
